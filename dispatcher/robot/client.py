"""Sending one message to one group robot: signed, paced under 20 a minute, retried when that helps.

Retried: errcode -1, HTTP 5xx, timeouts and connection errors (short backoff), and 410100 and the
older 130101 (too fast) after the pacing window. Every other refusal is permanent and names the
robot. Each retry sends the same body, `msgUuid` included, so a resend after a lost answer cannot
post twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from dispatcher import clock, redact
from dispatcher.dingtalk.http import NoRedirectSession, redirect_target
from dispatcher.dingtalk.message import dumps
from dispatcher.dingtalk.pacing import StepWatch
from dispatcher.errors import DeliveryError
from dispatcher.leaks import refuse, unlabelled
from dispatcher.robot.errors import BUSY, describe, retry_of, robot_error
from dispatcher.robot.message import RobotMessage
from dispatcher.robot.webhook import rebase, signed_url, token_key

log = logging.getLogger(__name__)

ENDPOINT = "robot_send"  # robot messages count against the monthly API quota
LIMIT_PER_MINUTE = 20  # DingTalk's limit per robot; the pacer stays strictly under it
WINDOW = 60.0


@dataclass(frozen=True)
class Robot:
    """One configured robot, its secrets in the clear: build it only where it is sent."""

    name: str
    webhook: str
    secret: str | None = None
    keyword: str | None = None

    def __repr__(self) -> str:
        return f"Robot({self.name!r})"


class Reservations(Protocol):
    """What the pacer needs from the state store (`dispatcher.store.robotsends.RobotSends`)."""

    def reserve(self, key: str, now_ms: Callable[[], int], limit: int, window_ms: int) -> int | None: ...

    def shift(self, key: str, ms: int) -> None: ...


class RobotPacer:
    """At most `limit` messages per robot in any `window` seconds, across every replica.

    `margin` widens the window a little: DingTalk counts when a request arrives, a moment after
    it was reserved here.
    """

    def __init__(
        self,
        reservations: Reservations,
        *,
        limit: int = LIMIT_PER_MINUTE - 1,
        window: float = WINDOW,
        margin: float = 1.0,
        now: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._reservations = reservations
        self.limit = limit
        self.window = window
        self._window_ms = int((window + margin) * 1000)
        self._now = now or (lambda: clock.now().timestamp())
        self._sleep = sleep
        # A fake `now` alone (tests) is its own monotonic clock: it never steps.
        self._monotonic = monotonic or (time.monotonic if now is None else now)
        self._steps: dict[str, StepWatch] = {}
        self._steps_lock = threading.Lock()

    def acquire(self, key: str) -> int:
        """Wait for a free slot of the robot `key`; returns the reserved instant (ms)."""
        stamps: list[int] = []  # the reservation reads the time once it holds the robot's lock

        def now_ms() -> int:
            stamps.append(self.now_ms())
            return stamps[-1]

        while True:
            self._keep_age_through_steps(key)
            wait_ms = self._reservations.reserve(key, now_ms, self.limit, self._window_ms)
            if wait_ms is None:
                return stamps[-1]
            self._sleep(wait_ms / 1000)

    def _keep_age_through_steps(self, key: str) -> None:
        """After a forward step of the wall clock, move the robot's stamps by as much (StepWatch)."""
        with self._steps_lock:
            watch = self._steps.setdefault(key, StepWatch(self._now, self._monotonic))
        if jump_ms := watch.forward_jump_ms():
            log.warning("the wall clock jumped %d ms forward: robot pacing keeps its sends' age", jump_ms)
            self._reservations.shift(key, jump_ms)

    def now_ms(self) -> int:
        return int(self._now() * 1000)

    def wait(self, seconds: float) -> None:
        self._sleep(seconds)


class RobotClient:
    def __init__(
        self,
        pacer: RobotPacer,
        *,
        secrets: redact.Secrets | None = None,
        base_url: str | None = None,
        timeout: tuple[float, float] = (5.0, 15.0),
        attempts: int = 3,
        backoff: float = 0.5,
        on_call: Callable[[str, int | None, float], None] | None = None,
    ) -> None:
        self.pacer = pacer
        self.secrets = secrets if secrets is not None else redact.Secrets()
        redact.install(self.secrets)
        self.base_url = base_url  # set: every webhook goes to this server instead (the sandbox)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._on_call = on_call  # (endpoint, errcode or None without an answer, seconds): quota, metrics
        self._session = NoRedirectSession()

    def close(self) -> None:
        self._session.close()

    def send(self, robot: Robot, message: RobotMessage) -> dict[str, Any]:
        """Post `message` to `robot`; DeliveryError (`retryable` when a later run may succeed) if not."""
        self.remember(robot)
        refuse(message.body, unlabelled(self.secrets.values()), f"robot {robot.name!r}'s message")
        if robot.keyword and robot.keyword not in message.checked:
            raise DeliveryError(
                f"robot {robot.name!r}: the message lacks the robot's keyword, so DingTalk would refuse it",
                endpoint="robot_send",
                hint=f"put robot {robot.name!r}'s keyword in the report's title or template",
            )
        data = dumps(message.body).encode("utf-8")
        error: DeliveryError | None = None
        for attempt in range(1, self.attempts + 1):
            if error is not None:  # a transient failure: wait, then resend the same bytes
                waits_window = error.errcode is not None and retry_of(error.errcode) == "window"
                delay = self.pacer.window if waits_window else self.backoff * 2 ** (attempt - 2)
                log.warning("%s; retrying in %.1f s", error.message, delay)
                self.pacer.wait(delay)
            self.pacer.acquire(token_key(robot.webhook))
            answer, error = self._post(robot, data)
            if error is None:
                return answer
            if not error.retryable:
                raise error
        assert error is not None
        raise DeliveryError(
            f"{error.message} (gave up after {self.attempts} attempts)",
            errcode=error.errcode,
            endpoint="robot_send",
            hint=f"robot {robot.name!r}: DingTalk kept failing; the run is retried later",
            retryable=True,
        )

    def _post(self, robot: Robot, data: bytes) -> tuple[dict[str, Any], DeliveryError | None]:
        url = signed_url(robot.webhook, robot.secret, self.pacer.now_ms())
        if self.base_url:
            url = rebase(url, self.base_url)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        started = time.monotonic()
        try:
            response = self._session.post(
                url, data=data, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            self._report(None, started)
            detail = redact.redact(f"{type(exc).__name__}: {exc}")
            return {}, _transient(robot, f"could not reach DingTalk: {detail}")
        if (where := redirect_target(response)) is not None:
            self._report(-1, started)
            return {}, _redirected(robot, response.status_code, where)
        answer, error = _judge(robot, response.status_code, response.content, len(data))
        self._report(0 if error is None else (error.errcode if error.errcode is not None else -1), started)
        return answer, error

    def _report(self, errcode: int | None, started: float) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(ENDPOINT, errcode, time.monotonic() - started)
        except Exception:  # a broken metrics hook must never stop a delivery
            log.exception("on_call hook failed for %s", ENDPOINT)

    def remember(self, robot: Robot) -> None:
        """Mask the robot's token and secret wherever they could show: logs, errors, history."""
        from dispatcher.robot.webhook import access_token

        for value in (access_token(robot.webhook), robot.secret or ""):
            if value:
                redact.remember(value, self.secrets)


def _judge(
    robot: Robot, status: int, content: bytes, size: int
) -> tuple[dict[str, Any], DeliveryError | None]:
    try:
        payload = json.loads(content)
    except ValueError:
        payload = None
    if status >= 500 or not isinstance(payload, dict):
        return {}, _transient(robot, f"HTTP {status}" + ("" if isinstance(payload, dict) else ", not JSON"))
    try:
        errcode = int(payload.get("errcode", 0))
    except (TypeError, ValueError):
        errcode = BUSY
    errmsg = redact.redact(str(payload.get("errmsg", "")))
    if errcode == 0:
        return payload, None
    if retry_of(errcode) != "no":
        known = describe(errcode)
        what = known.meaning if known is not None else "DingTalk failed"
        return payload, _transient(robot, f"{what} ({errcode}): {errmsg}", errcode)
    error = robot_error(robot.name, errcode, errmsg, size)
    error.retryable = False  # within this attempt: resending cannot change DingTalk's answer
    return payload, error


def _transient(robot: Robot, what: str, errcode: int | None = None) -> DeliveryError:
    return DeliveryError(
        f"robot {robot.name!r}: {what}", errcode=errcode, endpoint="robot_send", retryable=True
    )


def _redirected(robot: Robot, status: int, where: str) -> DeliveryError:
    """Never followed: it would resend the message to an address nobody configured."""
    return DeliveryError(
        f"robot {robot.name!r}: HTTP {status}, a redirect to {where}; redirects are never followed",
        endpoint="robot_send",
        hint=f"robot {robot.name!r}: DingTalk never redirects; check the webhook and any proxy in between",
        retryable=False,
    )
