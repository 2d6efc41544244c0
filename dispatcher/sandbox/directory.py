"""The sandbox's organisation: people (userid, name, mobile) and a department tree."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dispatcher.errors import DispatcherError

ROOT_DEPT = 1
GENERATED_DEPT = 900


@dataclass(frozen=True)
class User:
    userid: str
    name: str
    mobile: str
    dept_ids: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "userid": self.userid,
            "name": self.name,
            "mobile": self.mobile,
            "dept_ids": list(self.dept_ids),
        }


@dataclass(frozen=True)
class Department:
    id: int
    name: str
    parent_id: int | None


class Directory:
    """Not thread-safe on its own: the sandbox guards it with its one lock."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.departments: dict[int, Department] = {}
        self._by_mobile: dict[str, str] = {}

    @classmethod
    def builtin(cls) -> Directory:
        text = resources.files("dispatcher.sandbox").joinpath("directory.json").read_text("utf-8")
        doc = json.loads(text)
        directory = cls()
        for dept in doc["departments"]:
            directory.add_department(Department(dept["id"], dept["name"], dept["parent_id"]))
        directory.add_users(doc["users"])
        return directory

    def add_department(self, dept: Department) -> None:
        self.departments[dept.id] = dept

    def add_users(self, users: Iterable[Mapping[str, Any]]) -> None:
        for raw in users:
            user = _user_from(raw)
            for dept_id in user.dept_ids:
                if dept_id not in self.departments:
                    self.add_department(Department(dept_id, f"部门{dept_id}", ROOT_DEPT))
            old = self.users.get(user.userid)
            if old is not None:
                self._by_mobile.pop(old.mobile, None)
            self.users[user.userid] = user
            if user.mobile:
                self._by_mobile[user.mobile] = user.userid

    def add_generated(self, count: int) -> None:
        """Synthetic users u00001… with mobiles 139xxxxxxxx in dept 900, for benchmarks."""
        self.add_users(
            {
                "userid": f"u{i:05d}",
                "name": f"压测用户{i:05d}",
                "mobile": f"139{50000000 + i:08d}",
                "dept_ids": [GENERATED_DEPT],
            }
            for i in range(1, count + 1)
        )

    def load_file(self, path: str | Path) -> None:
        self.add_users(read_users_file(Path(path)))

    def userid_for_mobile(self, mobile: str) -> str | None:
        return self._by_mobile.get(mobile)

    def members(self, dept_id: int) -> list[str]:
        """Userids in the department and all its sub-departments, in directory order."""
        tree = self._subtree(dept_id)
        return [u.userid for u in self.users.values() if tree.intersection(u.dept_ids)]

    def _subtree(self, dept_id: int) -> set[int]:
        found = {dept_id}
        grew = True
        while grew:
            more = {d.id for d in self.departments.values() if d.parent_id in found}
            grew = not more <= found
            found |= more
        return found


def _user_from(raw: Mapping[str, Any]) -> User:
    userid = str(raw.get("userid") or "").strip()
    name = str(raw.get("name") or "").strip()
    if not userid or not name:
        raise DispatcherError(f"sandbox directory: a user needs a userid and a name: {dict(raw)!r}")
    dept_ids = raw.get("dept_ids") or [ROOT_DEPT]
    if isinstance(dept_ids, str):
        dept_ids = [d for d in re.split(r"[;|, ]+", dept_ids) if d]
    try:
        depts = tuple(int(d) for d in dept_ids)
    except ValueError as exc:
        raise DispatcherError(f"sandbox directory: user {userid!r}: bad dept_ids {dept_ids!r}") from exc
    return User(userid, name, str(raw.get("mobile") or "").strip(), depts)


def read_users_file(path: Path) -> list[dict[str, Any]]:
    """A JSON list of users (or {"users": [...]}), or a CSV headed userid,name,mobile,dept_ids."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DispatcherError(f"sandbox directory file {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DispatcherError(f"sandbox directory file {path}:{exc.lineno}: {exc.msg}") from exc
    users = doc.get("users") if isinstance(doc, dict) else doc
    if not isinstance(users, list):
        raise DispatcherError(f"sandbox directory file {path}: expected a list of users")
    return users
