"""Counted nouns for output and logs: "1 recipient", "2 recipients", "2 recipients and department 123"."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "retry": "retries"}


def plural(count: int, noun: str) -> str:
    """`count` and `noun`, the noun's last word plural unless the count is 1."""
    if count == 1:
        return f"{count} {noun}"
    head, _, last = noun.rpartition(" ")
    many = IRREGULAR.get(last) or (last + "es" if last.endswith(("s", "x", "ch", "sh")) else last + "s")
    return f"{count} {head + ' ' if head else ''}{many}"


def reach(userids: int, dept_ids: list[int], *, short: bool = False) -> str:
    """Who a send went to: its userids, and its departments by id, whose members DingTalk does not
    count. `short` for a table column: "2 + dept 123"."""
    if not dept_ids:
        return plural(userids, "recipient") if not short else str(userids)
    ids = ", ".join(map(str, dept_ids))
    depts = f"{'dept' if short else 'department'}{'s' if len(dept_ids) > 1 else ''} {ids}"
    if not userids:
        return depts
    return f"{userids} + {depts}" if short else f"{plural(userids, 'recipient')} and {depts}"
