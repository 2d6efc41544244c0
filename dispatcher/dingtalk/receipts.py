"""Reading what happened to sent tasks: getsendprogress and getsendresult, within the monthly quota.

getsendresult is not supported for tasks with more than 100 recipients (it times out)
[gets-the-result-of-sending-messages-asynchronously-to-the-enterprise]. A task of userids holds at
most 100; a task with departments can hold any number of people, so `result` mode never asks
about it, and `full` mode asks once, after the task finished, without retrying a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from dispatcher.dingtalk.results import DeliveryResult, Receipt, receipt_from
from dispatcher.dingtalk.transport import Transport
from dispatcher.errors import DeliveryError

log = logging.getLogger(__name__)

MAX_USERIDS = 100  # asyncsend_v2 userid_list; also the most getsendresult can report on
_SEND = "/topapi/message/corpconversation/"
# receipts: full polls progress at most twice, then reads the result: at most 3 calls per task.
RECEIPT_MODES = ("full", "result", "off")
PROGRESS_POLLS = 2


@dataclass(frozen=True)
class Task:
    """One accepted asyncsend_v2 call."""

    task_id: int
    userids: list[str]
    dept_ids: list[int]
    attempts: int


@dataclass(frozen=True)
class Reading:
    """How to read receipts: the mode, the overall timeout and the wait before asking."""

    mode: str
    timeout: float
    wait: float
    on_wait: Callable[[float], None] | None = None  # told the seconds left, about once a second


class Receipts:
    """The receipt calls of one app's client."""

    def __init__(
        self,
        http: Transport,
        agent_id: int,
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
    ) -> None:
        self._http = http
        self._agent_id = agent_id
        self._sleep = sleep
        self._monotonic = monotonic

    def send_result(self, task_id: int, *, once: bool = False) -> Receipt:
        """getsendresult; `once`: a single attempt, for a task DingTalk may not answer in time."""
        body = {"agent_id": self._agent_id, "task_id": task_id}
        retry = replace(self._http.retry, max_attempts=1) if once else None
        payload, _ = self._http.call("getsendresult", _SEND + "getsendresult", body, retry=retry)
        return receipt_from(task_id, payload.get("send_result") or {})

    def read(self, tasks: list[Task], reading: Reading, result: DeliveryResult) -> list[Receipt]:
        deadline = self._monotonic() + reading.timeout
        if reading.mode == "result" and any(not t.dept_ids for t in tasks):
            # One getsendresult per task: asked too early, its lists are still incomplete.
            self._pause(max(0.0, min(reading.wait, reading.timeout)), reading.on_wait)
        return [self._receipt(task, reading, deadline, result) for task in tasks]

    def _pause(self, seconds: float, on_wait: Callable[[float], None] | None) -> None:
        """Sleep; with `on_wait` (a person watching `send`), in steps of a second, each told the time left."""
        if on_wait is None:
            self._sleep(seconds)
            return
        end = self._monotonic() + seconds
        while (left := end - self._monotonic()) > 0:
            on_wait(left)
            self._sleep(min(1.0, left))

    def _receipt(self, task: Task, reading: Reading, deadline: float, result: DeliveryResult) -> Receipt:
        receipt = Receipt(task.task_id, task.userids, task.dept_ids, complete=False)
        full = reading.mode == "full"
        try:
            done = self._wait_done(task.task_id, deadline, reading) if full else None
            if not task.dept_ids or full:
                assert len(task.userids) <= MAX_USERIDS, "getsendresult can't report on >100 users"
                receipt = self.send_result(task.task_id, once=bool(task.dept_ids))
                complete = _accounted_for(receipt, task.userids) if done is None else done
                receipt.userids, receipt.dept_ids, receipt.complete = task.userids, task.dept_ids, complete
        except DeliveryError as exc:  # the message went out; a missing receipt must not fail it
            result.warnings.append(f"no receipt for task {task.task_id}: {exc.message}")
        receipt.attempts = task.attempts
        return receipt

    def _wait_done(self, task_id: int, deadline: float, reading: Reading) -> bool:
        """At most PROGRESS_POLLS getsendprogress calls: each one spends the monthly quota."""
        body = {"agent_id": self._agent_id, "task_id": task_id}
        for poll in range(PROGRESS_POLLS):
            payload, _ = self._http.call("getsendprogress", _SEND + "getsendprogress", body)
            if (payload.get("progress") or {}).get("status") == 2:
                return True
            remaining = deadline - self._monotonic()
            if remaining <= 0 or poll == PROGRESS_POLLS - 1:
                break
            self._pause(min(reading.wait, remaining), reading.on_wait)
        log.warning("task %d still sending when its receipt was read", task_id)
        return False


def department_note(dept_ids: list[int], mode: str) -> str | None:
    """What a send to departments tells its reader when no receipt names their members."""
    if not dept_ids or mode == "full":
        return None
    ids = ", ".join(map(str, dept_ids))
    which, its = (f"department {ids}", "its") if len(dept_ids) == 1 else (f"departments {ids}", "their")
    return (
        f"{which} reached {its} members without per-person receipts (receipts: {mode}); "
        "set receipts: full to read them"
    )


def receipts_mode(value: bool | str) -> str:
    mode = {True: "full", False: "off"}.get(value, value) if isinstance(value, bool) else value
    if mode not in RECEIPT_MODES:
        raise ValueError(f"receipts must be one of {', '.join(RECEIPT_MODES)}, not {value!r}")
    return str(mode)


def _accounted_for(receipt: Receipt, userids: list[str]) -> bool:
    """True when the result lists every user: the task had finished when it was read."""
    listed = {*receipt.invalid, *receipt.forbidden, *receipt.failed, *receipt.read, *receipt.unread}
    return set(userids) <= listed
