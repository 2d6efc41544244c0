"""What happens to an accepted asyncsend_v2 task: who receives it, who is throttled, who fails.

The per-recipient limits still answer errcode 0 but do not deliver; the user shows up as
forbidden in the send result [gets-the-result-of-sending-messages-asynchronously-to-the-enterprise].
Not thread-safe on its own: the engine calls it under its one lock.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dispatcher.sandbox.directory import Directory
from dispatcher.sandbox.options import SandboxOptions
from dispatcher.sandbox.rules import TO_ALL_PER_DAY, SendRequest, canonical

SHANGHAI = ZoneInfo("Asia/Shanghai")  # DingTalk's "per day" is China's calendar day
TASK_RETENTION = 24 * 3600.0  # getsendresult answers only for tasks of the last 24 h
DUPLICATE, DAILY_LIMIT, APP_MINUTE_LIMIT = "143106", "143105", "143103"


@dataclass
class Task:
    task_id: int
    body: dict[str, Any]
    msg: dict[str, Any]
    created: float
    at: str
    recipients: list[str] = field(default_factory=list)
    invalid_user_ids: list[str] = field(default_factory=list)
    invalid_dept_ids: list[int] = field(default_factory=list)
    forbidden: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)
    recalled: bool = False


class Mailroom:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.tasks: dict[int, Task] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self._daily: Counter[tuple[str, date]] = Counter()
        self._seen: set[tuple[str, date, str]] = set()
        self._minute: deque[float] = deque()
        self._failed_once: set[str] = set()
        self._to_all: Counter[date] = Counter()

    def send(
        self,
        task_id: int,
        req: SendRequest,
        body: dict[str, Any],
        options: SandboxOptions,
        mono: float,
        wall: datetime,
    ) -> Task:
        task = Task(task_id, body, req.msg, mono, wall.isoformat())
        task.recipients = self._recipients(req, task)
        day, content = wall.astimezone(SHANGHAI).date(), canonical(req.msg)
        while self._minute and self._minute[0] <= mono - 60.0:
            self._minute.popleft()
        for userid in task.recipients:
            self._deliver_one(task, userid, options, mono, (day, content, wall))
        self.tasks[task_id] = task
        return task

    def allow_to_all(self, wall: datetime) -> bool:
        """Count a message to the whole company; False past the day's limit (41045)."""
        day = wall.astimezone(SHANGHAI).date()
        if self._to_all[day] >= TO_ALL_PER_DAY:
            return False
        self._to_all[day] += 1
        return True

    def _recipients(self, req: SendRequest, task: Task) -> list[str]:
        wanted: dict[str, None] = {}
        for userid in req.userids:
            if userid in self.directory.users:
                wanted[userid] = None
            elif userid not in task.invalid_user_ids:
                task.invalid_user_ids.append(userid)
        for dept_id in req.dept_ids:
            if dept_id not in self.directory.departments:
                task.invalid_dept_ids.append(dept_id)
                continue
            wanted.update(dict.fromkeys(self.directory.members(dept_id)))
        if req.to_all_user:
            wanted.update(dict.fromkeys(self.directory.users))
        return list(wanted)

    def _deliver_one(
        self,
        task: Task,
        userid: str,
        options: SandboxOptions,
        mono: float,
        when: tuple[date, str, datetime],
    ) -> None:
        day, content, wall = when
        if (userid, day, content) in self._seen:
            return self._forbid(task, userid, DUPLICATE, 1)
        if self._daily[userid, day] >= options.per_user_daily:
            return self._forbid(task, userid, DAILY_LIMIT, options.per_user_daily)
        if len(self._minute) >= options.recipients_per_minute:
            return self._forbid(task, userid, APP_MINUTE_LIMIT, options.recipients_per_minute)
        self._minute.append(mono)
        if userid in options.failing_userids and userid not in self._failed_once:
            self._failed_once.add(userid)
            task.failed.append(userid)
            return None
        self._seen.add((userid, day, content))
        self._daily[userid, day] += 1
        self._store_message(task, userid, wall)
        return None

    def _forbid(self, task: Task, userid: str, code: str, threshold: int) -> None:
        task.forbidden.append({"code": code, "count": threshold, "userid": userid})

    def _store_message(self, task: Task, userid: str, wall: datetime) -> None:
        message_id = len(self.messages) + 1
        self.messages[message_id] = {
            "id": message_id,
            "task_id": task.task_id,
            "userid": userid,
            "name": self.directory.users[userid].name,
            "msgtype": task.msg.get("msgtype"),
            "msg": task.msg,
            "at": wall.isoformat(),
            "read": False,
            "recalled": False,
        }
        task.message_ids.append(message_id)

    def find(self, task_id: Any, mono: float) -> Task | None:
        try:
            task = self.tasks.get(int(str(task_id).strip()))
        except ValueError:
            return None
        return task if task and mono - task.created <= TASK_RETENTION else None

    def send_result(self, task: Task) -> dict[str, Any]:
        delivered = [self.messages[i] for i in task.message_ids]
        return {
            "invalid_user_id_list": list(task.invalid_user_ids),
            "forbidden_user_id_list": [f["userid"] for f in task.forbidden],
            "failed_user_id_list": list(task.failed),
            "read_user_id_list": [m["userid"] for m in delivered if m["read"]],
            "unread_user_id_list": [m["userid"] for m in delivered if not m["read"]],
            "invalid_dept_id_list": list(task.invalid_dept_ids),
            "forbidden_list": [dict(f) for f in task.forbidden],
        }

    def recall(self, task: Task) -> None:
        task.recalled = True
        for message_id in task.message_ids:
            self.messages[message_id]["recalled"] = True

    def mark_read(self, userid: str, up_to_id: int | None = None) -> int:
        """Marks the user's messages read, up to `up_to_id` (the newest one a page showed)."""
        last = len(self.messages) if up_to_id is None else up_to_id
        unread = [
            m for m in self.messages.values() if m["userid"] == userid and not m["read"] and m["id"] <= last
        ]
        for message in unread:
            message["read"] = True
        return len(unread)

    def task_view(self, task: Task) -> dict[str, Any]:
        return {
            "task_id": task.task_id,
            "at": task.at,
            "body": task.body,
            "msg": task.msg,
            "recipients": list(task.recipients),
            "send_result": self.send_result(task),
            "recalled": task.recalled,
        }
