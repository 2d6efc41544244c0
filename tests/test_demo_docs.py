"""The manual's table of the demo database matches the tables dispatcher really creates."""

from __future__ import annotations

import re

from dispatcher.demo.shop import METADATA
from tests.docs_kit import section


def _documented_tables() -> dict[str, list[str]]:
    text = section("writing/queries.md", "The demo database")
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    return {table: re.findall(r"`(\w+)`", columns) for table, columns in rows}


def test_readme_lists_every_demo_table_with_its_columns_in_order():
    actual = {name: [c.name for c in table.columns] for name, table in METADATA.tables.items()}
    assert _documented_tables() == actual


def test_readme_tells_authors_to_round_money_in_sql():
    assert "ROUND(SUM(amount), 2)" in section("writing/queries.md", "The demo database")
