"""The sandbox's DingTalk API: tokens, call limits, faults and the endpoints, behind one lock.

Every answer is a JSON object with errcode/errmsg, as DingTalk answers HTTP 200 even on failure.
The HTTP layer (server.py) only parses requests and writes these answers.
"""

from __future__ import annotations

import copy
import random
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from dispatcher import clock
from dispatcher.sandbox.delivery import Mailroom, Task
from dispatcher.sandbox.directory import Directory
from dispatcher.sandbox.media import MediaStore
from dispatcher.sandbox.options import SandboxOptions, changed
from dispatcher.sandbox.rules import (
    TO_ALL_PER_DAY,
    Refusal,
    envelope,
    parse_agent_id,
    parse_send,
    valid_mobile,
)

SECRET_KEYS = ("access_token", "appsecret")
GET_ENDPOINTS = {"gettoken"}
PLAIN_ERRORS = {"gettoken", "media_upload"}  # not /topapi/*: no gateway envelope (errcode 88)
# Calls that count against the monthly quota; tokens and the address book are exempt
# [how-to-process-api-throttling-on-the-dingtalk-server].
COUNTED = frozenset({"asyncsend_v2", "getsendprogress", "getsendresult", "recall", "media_upload"})
RECEIPT_LISTS = ("read_user_id_list", "unread_user_id_list", "failed_user_id_list", "forbidden_list")
Handler = Callable[[dict[str, Any], float], dict[str, Any] | Refusal]


def build_directory(options: SandboxOptions) -> Directory:
    directory = Directory.builtin()
    if options.directory_file:
        directory.load_file(options.directory_file)
    if options.generated_users:
        directory.add_generated(options.generated_users)
    return directory


def redacted(params: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in SECRET_KEYS else v) for k, v in params.items()}


class Engine:
    def __init__(self, options: SandboxOptions, monotonic: Callable[[], float] = time.monotonic):
        self.lock = threading.RLock()
        self.options = options
        self.directory = build_directory(options)
        self.mail = Mailroom(self.directory)
        self.media = MediaStore()
        self._monotonic = monotonic
        self._rng = _rng(options.seed)
        self._next_task_id = self._rng.randrange(10**11, 9 * 10**11)
        self._tokens: dict[str, float] = {}
        self._current_token: str | None = None
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._throttled = 0
        self._spared: defaultdict[str, int] = defaultdict(int)  # calls let through by force_errcode_after
        self._forced: defaultdict[str, int] = defaultdict(int)  # calls refused by force_errcode
        self._quota_used = 0
        self._calls: list[dict[str, Any]] = []
        self._handlers: dict[str, Handler] = {
            "getbymobile": self._getbymobile,
            "user_get": self._user_get,
            "asyncsend_v2": self._asyncsend,
            "getsendprogress": self._getsendprogress,
            "getsendresult": self._getsendresult,
            "recall": self._recall,
            "media_upload": lambda body, _: self.media.upload(body, time.time()),
        }

    # -- control (Sandbox API and /_sandbox/*) ------------------------------------------------
    def set_options(self, changes: dict[str, Any]) -> None:
        with self.lock:
            new = changed(self.options, changes)
            if "seed" in changes:
                self._rng = _rng(new.seed)
            if "throttle_first" in changes:
                self._throttled = 0  # throttle_first means "the next N calls" from now
            if {"force_errcode", "force_errcode_after", "force_errcode_times"} & set(changes):
                self._spared.clear()  # the forced-error counters also count from now
                self._forced.clear()
            if new.directory_file and new.directory_file != self.options.directory_file:
                self.directory.load_file(new.directory_file)
            if new.generated_users > self.options.generated_users:
                self.directory.add_generated(new.generated_users)
            self.options = new

    def reset(self) -> None:
        with self.lock:
            self.mail = Mailroom(self.directory)
            self.media = MediaStore()
            self._windows.clear()
            self._throttled = 0
            self._spared.clear()
            self._quota_used = 0
            self._forced.clear()
            self._calls.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            self._tokens = dict.fromkeys(self._tokens, float("-inf"))
            self._current_token = None

    def add_users(self, users: list[dict[str, Any]]) -> None:
        with self.lock:
            self.directory.add_users(users)

    def mark_read(self, userid: str, up_to_id: int | None = None) -> int:
        with self.lock:
            return self.mail.mark_read(userid, up_to_id)

    # -- views ------------------------------------------------------------------------------------
    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [c for c in self._calls if endpoint is None or c["endpoint"] == endpoint]
            return copy.deepcopy(found)

    def messages(self, userid: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [m for m in self.mail.messages.values() if userid is None or m["userid"] == userid]
            return copy.deepcopy(found)

    def tasks(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy([self.mail.task_view(t) for t in self.mail.tasks.values()])

    def inbox_snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        """Shallow copies for the inbox page, which only reads them: cheap with many messages."""
        with self.lock:
            messages = [dict(m) for m in self.mail.messages.values()]
            tasks = [self.mail.task_view(t) for t in self.mail.tasks.values()]
            names = {u.userid: u.name for u in self.directory.users.values()}
        return messages, tasks, names

    def mention_names(self) -> dict[str, str]:
        """userid or mobile -> name: how a group chat shows an @mention of someone it knows."""
        with self.lock:
            users = list(self.directory.users.values())
        return {**{u.mobile: u.name for u in users if u.mobile}, **{u.userid: u.name for u in users}}

    def medium(self, media_id: str) -> Any:
        """An uploaded file (sandbox.media.Medium), or None: for the inbox's images and downloads."""
        with self.lock:
            return self.media.media.get(media_id)

    def media_files(self) -> dict[str, tuple[str, int]]:
        with self.lock:
            return {m.media_id: (m.name, len(m.content)) for m in self.media.media.values()}

    # -- the API ----------------------------------------------------------------------------------
    def fault(self, endpoint: str) -> str | None:
        """An injected transport fault for this call: "reset", "fail" (HTTP 500) or None."""
        with self.lock:
            if self._rng.random() < self.options.reset_rate:
                return "reset"
            if self._rng.random() < self.options.fail_rate:
                return "fail"
            return None

    def call(
        self, endpoint: str, method: str, query: dict[str, Any], body: dict[str, Any] | None
    ) -> dict[str, Any]:
        with self.lock:
            answer = self._answer(endpoint, method, query, body)
        if isinstance(answer, Refusal):
            if endpoint in PLAIN_ERRORS:
                answer = {"errcode": answer.errcode, "errmsg": answer.errmsg}
            else:
                answer = envelope(answer, self.options.sub_code_form)
        if endpoint != "gettoken":
            answer["request_id"] = secrets.token_hex(8)
        return answer

    def record(
        self,
        endpoint: str,
        method: str,
        path: str,
        query: dict[str, Any],
        body: Any,
        status: int | None,
        errcode: int | None,
        sub_code: int | None = None,
    ) -> None:
        """One API call for calls(); status None: the connection was closed without an answer.
        `sub_code` is the real code of an errcode 88 envelope."""
        entry = {
            "endpoint": endpoint,
            "method": method,
            "path": path,
            "query": redacted(query),
            "body": redacted(body) if isinstance(body, dict) else body,
            "http_status": status,
            "errcode": errcode,
            "sub_code": sub_code,
            "at": clock.now().isoformat(),
        }
        with self.lock:
            self._calls.append(entry)

    def _answer(
        self, endpoint: str, method: str, query: dict[str, Any], body: dict[str, Any] | None
    ) -> dict[str, Any] | Refusal:
        wanted = "GET" if endpoint in GET_ENDPOINTS else "POST"
        if method != wanted:
            return Refusal(43001 if wanted == "GET" else 43002)
        mono = self._monotonic()
        limited = self._throttle(endpoint, mono)
        if limited:
            return limited
        forced = self._forced_errcode(endpoint)
        if forced is not None:
            return Refusal(forced)
        if endpoint == "gettoken":
            return self._gettoken(query, mono)
        token = query.get("access_token") or (body or {}).get("access_token")
        bad_token = self._check_token(token, mono)
        if bad_token:
            return bad_token
        if endpoint in COUNTED and self.options.monthly_quota:
            if self._quota_used >= self.options.monthly_quota:
                return Refusal(90020)
            self._quota_used += 1
        if body is None:
            return Refusal(40035, "the request body is neither a JSON object nor form-encoded")
        if endpoint == "media_upload" and "type" not in body and "type" in query:
            body = {**body, "type": query["type"]}  # [upload-media-files] allows `type` in the URL
        return self._handlers[endpoint](body, mono)

    def _forced_errcode(self, endpoint: str) -> int | None:
        """force_errcode, after sparing `force_errcode_after` calls, for `force_errcode_times` calls."""
        forced, opts = self.options.force_errcode.get(endpoint), self.options
        if forced is None:
            return None
        if self._spared[endpoint] < opts.force_errcode_after:
            self._spared[endpoint] += 1
            return None
        if opts.force_errcode_times and self._forced[endpoint] >= opts.force_errcode_times:
            return None
        self._forced[endpoint] += 1
        return int(forced)

    def _throttle(self, endpoint: str, mono: float) -> Refusal | None:
        """throttle_first, then the per-app per-API limit: calls_per_second in any 1-s window."""
        if endpoint != "gettoken" and self._throttled < self.options.throttle_first:
            self._throttled += 1
            return Refusal(90018)
        window = self._windows[endpoint]
        while window and window[0] <= mono - 1.0:
            window.popleft()
        if len(window) >= self.options.calls_per_second:
            return Refusal(90018)
        window.append(mono)  # only answered calls count, so a caller that waits 1 s gets through
        return None

    # -- tokens [obtain-orgapp-token] ------------------------------------------------------------
    def _gettoken(self, query: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        key_ok = secrets.compare_digest(str(query.get("appkey", "")), self.options.app_key)
        secret_ok = secrets.compare_digest(str(query.get("appsecret", "")), self.options.app_secret)
        if not (key_ok and secret_ok):
            return Refusal(40096)
        ttl = self.options.token_ttl
        token = self._current_token
        if token is None or self._tokens[token] <= mono:
            token = secrets.token_hex(16)
            self._current_token = token
        # asking again while the token is valid returns the same token, extended
        self._tokens[token] = mono + ttl
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": int(ttl)}

    def _check_token(self, token: Any, mono: float) -> Refusal | None:
        if not token:
            return Refusal(41001)
        expires = self._tokens.get(str(token))
        if expires is None:
            return Refusal(40014)
        return Refusal(42001) if expires <= mono else None

    # -- endpoints ------------------------------------------------------------------------------
    def _getbymobile(self, body: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        mobile = body.get("mobile")
        if not valid_mobile(mobile):
            return Refusal(40104)
        userid = self.directory.userid_for_mobile(str(mobile))
        if userid is None:
            return Refusal(60121)
        return {"errcode": 0, "errmsg": "ok", "result": {"userid": userid}}

    def _user_get(self, body: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        user = self.directory.users.get(str(body.get("userid") or ""))
        if user is None:
            return Refusal(33012)
        result = {
            "userid": user.userid,
            "name": user.name,
            "mobile": user.mobile,
            "dept_id_list": list(user.dept_ids),
            "active": True,
        }
        return {"errcode": 0, "errmsg": "ok", "result": result}

    def _asyncsend(self, body: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        req = parse_send(body, self.options.agent_id)
        if isinstance(req, Refusal):
            return req
        bad_media = self.media.check_msg(req.msg)
        if bad_media:
            return bad_media
        if req.to_all_user and not self.mail.allow_to_all(clock.now()):
            return Refusal(41045, f"to_all_user: at most {TO_ALL_PER_DAY} times a day")
        task_id = self._next_task_id
        self._next_task_id += self._rng.randrange(1, 1000)
        self.mail.send(task_id, req, redacted(body), self.options, mono, clock.now())
        return {"errcode": 0, "errmsg": "ok", "task_id": task_id}

    def _task(self, body: dict[str, Any], key: str, mono: float) -> Task | Refusal:
        refusal = parse_agent_id(body, self.options.agent_id)
        if refusal:
            return refusal
        if body.get(key) in (None, ""):
            return Refusal(40035, f"缺少参数 {key}")
        task = self.mail.find(body.get(key), mono)
        return task if task else Refusal(400002, f"{key} {str(body.get(key))[:40]} not found")

    def _getsendprogress(self, body: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        task = self._task(body, "task_id", mono)
        if isinstance(task, Refusal):
            return task
        delay, elapsed = self.options.progress_delay, mono - task.created
        done = elapsed >= delay
        percent = 100 if done else min(99, int(100 * elapsed / delay))
        progress = {"progress_in_percent": percent, "status": 2 if done else 1}
        return {"errcode": 0, "errmsg": "ok", "progress": progress}

    def _getsendresult(self, body: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        task = self._task(body, "task_id", mono)
        if isinstance(task, Refusal):
            return task
        result = self.mail.send_result(task)
        delay, elapsed = self.options.progress_delay, mono - task.created
        if elapsed < delay:  # still sending: the lists hold only the users handled so far
            for name in RECEIPT_LISTS:
                result[name] = result[name][: int(len(result[name]) * elapsed / delay)]
            result["forbidden_user_id_list"] = [f["userid"] for f in result["forbidden_list"]]
        return {"errcode": 0, "errmsg": "ok", "send_result": result}

    def _recall(self, body: dict[str, Any], mono: float) -> dict[str, Any] | Refusal:
        task = self._task(body, "msg_task_id", mono)
        if isinstance(task, Refusal):
            return task
        self.mail.recall(task)
        return {"errcode": 0, "errmsg": "ok"}


def _rng(seed: int | None) -> random.Random:
    """Seeded, fault injection and task ids repeat run after run: deterministic tests."""
    return secrets.SystemRandom() if seed is None else random.Random(seed)
