"""Counted nouns for output and logs: "1 recipient", "2 recipients"."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "retry": "retries"}


def plural(count: int, noun: str) -> str:
    """`count` and `noun`, the noun's last word plural unless the count is 1."""
    if count == 1:
        return f"{count} {noun}"
    head, _, last = noun.rpartition(" ")
    many = IRREGULAR.get(last) or (last + "es" if last.endswith(("s", "x", "ch", "sh")) else last + "s")
    return f"{count} {head + ' ' if head else ''}{many}"
