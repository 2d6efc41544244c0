"""DingTalk work notifications from an internal app: token, mobile lookup, paced sending, receipts.

Speaks the real server API (docs/dingtalk-api.md); against production only the
credentials and the base URL change. Knows nothing about reports.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol, TypeVar

from dispatcher.dingtalk.media import MediaCache
from dispatcher.dingtalk.message import MAX_MSG_BYTES, msg_bytes
from dispatcher.dingtalk.pacing import Pacing
from dispatcher.dingtalk.receipts import MAX_USERIDS, Reading, Receipts, Task, department_note, receipts_mode
from dispatcher.dingtalk.results import Batch, DeliveryResult, Receipt, Refusal, mask_mobile
from dispatcher.dingtalk.retry import RetryPolicy
from dispatcher.dingtalk.transport import Credentials, OnCall, Registry, Transport
from dispatcher.errors import DeliveryError
from dispatcher.redact import Secrets
from dispatcher.words import plural

__all__ = ["Credentials", "DeliveryResult", "DingTalkClient", "Pacing", "Receipt", "RetryPolicy",
           "UseridCache"]  # fmt: skip

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
USERID_MAX_AGE = timedelta(days=7)
MAX_DEPTS = 20  # asyncsend_v2 dept_id_list
UNKNOWN_MOBILE = {60121: "no employee with this mobile", 40104: "not a valid mobile number"}
_SEND = "/topapi/message/corpconversation/"


class UseridCache(Protocol):
    def get_userids(self, app_key: str, mobiles: Sequence[str], max_age: timedelta) -> dict[str, str]: ...

    def put_userids(self, app_key: str, mapping: Mapping[str, str]) -> None: ...


class DingTalkClient:
    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str | None = None,
        userid_cache: UseridCache | None = None,
        pacing: Pacing = Pacing(),
        retry: RetryPolicy = RetryPolicy(),
        timeout: tuple[float, float] = (5.0, 20.0),
        on_call: OnCall | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        receipts: bool | str = True,
        receipt_wait: float = 5.0,
        registry: Registry | None = None,
        media_cache: MediaCache | None = None,
        media_max_age: timedelta = timedelta(hours=24),
    ) -> None:
        self.credentials = credentials
        self._media_cache = media_cache
        self.media_max_age = media_max_age
        self.receipts = receipts_mode(receipts)  # send()'s default; see send()
        self.receipt_wait = receipt_wait
        # Told the seconds left while receipts are awaited; `send` shows it, the daemon leaves it None.
        self.on_receipt_wait: Callable[[float], None] | None = None
        self.base_url = (base_url or os.environ.get("DINGTALK_API_BASE") or DEFAULT_BASE_URL).rstrip("/")
        self._cache = userid_cache
        self._mobile_locks: dict[str, threading.Lock] = {}
        self._mobile_locks_guard = threading.Lock()
        self._sleep = sleep
        self._monotonic = monotonic
        self._http = Transport(
            credentials,
            self.base_url,
            pacing=pacing,
            retry=retry,
            timeout=timeout,
            on_call=on_call,
            sleep=sleep,
            monotonic=monotonic,
            registry=registry,
        )
        self._receipts = Receipts(self._http, credentials.agent_id, sleep, monotonic)

    def __repr__(self) -> str:
        return f"DingTalkClient(base_url={self.base_url!r}, app_key={self.credentials.app_key!r})"

    def token(self) -> str:
        """A valid access token, shared by every client of this app in the process."""
        return self._http.token()

    @property
    def secrets(self) -> Secrets:
        """The values this app masks and never sends: its app secret, access tokens, robots' secrets."""
        return self._http.registry.secrets

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DingTalkClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- recipients --------------------------------------------------------------------------

    def resolve_mobiles(self, mobiles: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """mobile -> userid for current employees, and the masked problems for the rest."""
        wanted = _unique(m.strip() for m in mobiles if m and m.strip())
        if not wanted:
            return {}, []
        app_key = self.credentials.app_key
        found = dict(self._cache.get_userids(app_key, wanted, USERID_MAX_AGE)) if self._cache else {}
        problems: list[str] = []
        for mobile in (m for m in wanted if m not in found):
            userid, problem = self._resolve_one(mobile)
            if userid:
                found[mobile] = userid
            else:
                problems.append(problem)
        return {m: found[m] for m in wanted if m in found}, problems

    def _resolve_one(self, mobile: str) -> tuple[str | None, str]:
        """Runs sending at the same time share recipients: one lookup per mobile, and the others
        wait for it and read its answer from the cache instead of asking DingTalk again."""
        with self._mobile_lock(mobile):
            if self._cache:
                cached = self._cache.get_userids(self.credentials.app_key, [mobile], USERID_MAX_AGE)
                if mobile in cached:
                    return cached[mobile], ""
            userid, problem = self._lookup(mobile)
            if userid and self._cache:
                self._cache.put_userids(self.credentials.app_key, {mobile: userid})
            return userid, problem

    def _mobile_lock(self, mobile: str) -> threading.Lock:
        with self._mobile_locks_guard:
            return self._mobile_locks.setdefault(mobile, threading.Lock())

    def _lookup(self, mobile: str) -> tuple[str | None, str]:
        try:
            payload, _ = self._http.call("getbymobile", "/topapi/v2/user/getbymobile", {"mobile": mobile})
        except DeliveryError as exc:
            reason = UNKNOWN_MOBILE.get(exc.errcode or 0)
            if reason is None:
                raise
            return None, f"{mask_mobile(mobile)}: {reason} (errcode {exc.errcode})"
        return str(payload["result"]["userid"]), ""

    def get_user(self, userid: str) -> dict[str, Any]:
        """One person's address-book entry (topapi/v2/user/get); exempt from the monthly quota."""
        payload, _ = self._http.call("user_get", "/topapi/v2/user/get", {"userid": userid})
        result = payload.get("result")
        return result if isinstance(result, dict) else {}

    # -- media -------------------------------------------------------------------------------

    def media_id(self, kind: str, name: str, content: bytes, scope: str = "") -> str:
        """A media_id for an image or file: reused from the cache within `scope` (a run's fire time),
        or uploaded once."""
        from dispatcher.dingtalk.media import media_id

        return media_id(self._http, kind, name, content, self._media_cache, self.media_max_age, scope)

    def forget_media(self, kind: str, name: str, content: bytes, scope: str = "") -> None:
        """After DingTalk refused this content's media_id (40007): upload it again next time."""
        from dispatcher.dingtalk.media import forget

        forget(self._http, kind, name, content, self._media_cache, scope)

    # -- sending -----------------------------------------------------------------------------

    def send(
        self,
        msg: dict[str, Any],
        *,
        userids: Sequence[str] = (),
        mobiles: Sequence[str] = (),
        dept_ids: Sequence[int] = (),
        receipts: bool | str | None = None,
        receipt_timeout: float = 30.0,
        skip_userids: Collection[str] = (),
        skip_dept_ids: Collection[int] = (),
        receipt_wait: float | None = None,
    ) -> DeliveryResult:
        """Send `msg` to everyone once, in batches DingTalk accepts; then read receipts and
        resend once to the users DingTalk reports as failed.

        `skip_userids` and `skip_dept_ids` are those an earlier attempt already delivered to. When DingTalk
        refuses a batch after accepting others, sending stops and the result is partial
        (`result.refused`); when it refuses the first, the DeliveryError propagates.

        `receipts`: `full` (progress polling, then the result), `result` (one getsendresult per
        task after `receipt_wait` seconds) or `off`; True means `full`, False `off`, None the
        client's own setting."""
        _check_size(msg)
        resolved, problems = self.resolve_mobiles(mobiles)
        users = _unique([u.strip() for u in userids if u and u.strip()] + list(resolved.values()))
        depts = _unique(int(d) for d in dept_ids)
        if not users and not depts:
            raise DeliveryError(
                "no recipient left to send to" + (": " + "; ".join(problems) if problems else ""),
                hint="fix the report's recipients (userids, mobiles or dept_ids)",
            )
        users = [u for u in users if u not in skip_userids]
        depts = [d for d in depts if d not in skip_dept_ids]
        tasks, refused = self._send_all(msg, users, depts)
        result = DeliveryResult(
            task_ids=[t.task_id for t in tasks],
            batches=len(tasks),
            recipients=len(_unique(u for t in tasks for u in t.userids)),
            dept_ids=_unique(d for t in tasks for d in t.dept_ids),
            unresolved_mobiles=problems,
            accepted=[Batch(t.task_id, t.userids, t.dept_ids) for t in tasks],
            refused=refused,
        )
        mode = self.receipts if receipts is None else receipts_mode(receipts)
        wait = self.receipt_wait if receipt_wait is None else receipt_wait
        if mode != "off":
            self._collect_receipts(
                msg, tasks, result, Reading(mode, receipt_timeout, wait, self.on_receipt_wait)
            )
        note = department_note(result.dept_ids, mode)
        result.notes += [note] if note else []
        return result

    def _collect_receipts(
        self, msg: dict[str, Any], tasks: list[Task], result: DeliveryResult, reading: Reading
    ) -> None:
        result.receipts = self._receipts.read(tasks, reading, result)
        failed = _unique(u for r in result.receipts for u in r.failed)
        if not failed:
            return
        log.info("resending to %s DingTalk reported as failed", plural(len(failed), "user"))
        resent: list[Task] = []
        try:
            for task in self._send_batches(msg, failed, []):
                resent.append(task)
        except DeliveryError as exc:  # the first send went out; report, don't fail it
            result.warnings.append(f"resending to failed users stopped: {exc.message}")
        result.resent_userids = [u for t in resent for u in t.userids]
        result.resent_task_ids = [t.task_id for t in resent]
        result.receipts += self._receipts.read(resent, reading, result)

    def _send_all(
        self, msg: dict[str, Any], users: list[str], depts: list[int]
    ) -> tuple[list[Task], list[Refusal]]:
        tasks: list[Task] = []
        try:
            for task in self._send_batches(msg, users, depts):
                tasks.append(task)
        except DeliveryError as exc:
            if not tasks:
                raise
            # What went out stays out: the caller records it, and a retry sends only the rest.
            sent_users = {u for t in tasks for u in t.userids}
            sent_depts = {d for t in tasks for d in t.dept_ids}
            rest_users = [u for u in users if u not in sent_users]
            rest_depts = [d for d in depts if d not in sent_depts]
            log.warning("asyncsend_v2 refused after %s: %s", plural(len(tasks), "accepted call"), exc.message)
            return tasks, [Refusal(exc.errcode, exc.message, rest_users, rest_depts)]
        return tasks, []

    def _send_batches(self, msg: dict[str, Any], users: list[str], depts: list[int]) -> Iterator[Task]:
        size = min(MAX_USERIDS, self._http.pacer.pacing.recipients_per_minute)
        user_chunks = _chunks(users, size)
        dept_chunks = _chunks(depts, MAX_DEPTS)
        for i in range(max(len(user_chunks), len(dept_chunks))):
            yield self._send_one(
                msg,
                user_chunks[i] if i < len(user_chunks) else [],
                dept_chunks[i] if i < len(dept_chunks) else [],
            )

    def _send_one(self, msg: dict[str, Any], users: list[str], depts: list[int]) -> Task:
        body: dict[str, Any] = {"agent_id": self.credentials.agent_id}
        if users:
            body["userid_list"] = ",".join(users)
        if depts:
            body["dept_id_list"] = ",".join(str(d) for d in depts)
        body["msg"] = msg
        with self._recipient_slot(len(users)):
            payload, attempts = self._http.call("asyncsend_v2", _SEND + "asyncsend_v2", body)
        task_id = int(payload["task_id"])
        log.debug(
            "asyncsend_v2 task %d: %s, %s", task_id, plural(len(users), "userid"), plural(len(depts), "dept")
        )
        return Task(task_id, users, depts, attempts)

    def _recipient_slot(self, count: int) -> AbstractContextManager[Any]:
        return self._http.pacer.recipients.reserve(count) if count else nullcontext()

    # -- receipts ----------------------------------------------------------------------------

    def get_send_result(self, task_id: int) -> Receipt:
        return self._receipts.send_result(task_id)

    def recall(self, task_id: int) -> None:
        body = {"agent_id": self.credentials.agent_id, "msg_task_id": task_id}
        self._http.call("recall", _SEND + "recall", body)


def _check_size(msg: dict[str, Any]) -> None:
    size = msg_bytes(msg)
    if size > MAX_MSG_BYTES:
        raise DeliveryError(
            f"the message is {size} bytes; DingTalk accepts at most {MAX_MSG_BYTES}",
            endpoint="asyncsend_v2",
            hint="shorten the message (fewer rows or columns)",
        )


def _unique(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
