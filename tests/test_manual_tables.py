"""The hand-written key tables of docs/writing/reports-yaml.md agree with the config models.

The generated reference (docs/reference/reports-yaml.md) cannot go stale: tools/gen_docs.py writes
it from the models. The long-form page beside it is written by hand, with examples and advice, so
this test holds it to the same facts: each table names exactly the keys its model accepts, and
every default the page states is the default the model applies, read through the model's own
validators (so `1m` is compared as the 60 seconds it means).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from dispatcher.config.docs import INTERNAL
from dispatcher.config.model import Config, DingTalkConfig, RecipientGroup, Report
from tests.docs_kit import section

PAGE = "writing/reports-yaml.md"
MINIMAL: dict[type[BaseModel], dict[str, Any]] = {
    Report: {"id": "r", "title": "t", "schedule": "0 8 * * *", "source": "s", "sql": "SELECT 1", "to": ["g"]},
    DingTalkConfig: {"app_key": "k", "app_secret": "s", "agent_id": 1},
}
TABLES: dict[str, type[BaseModel]] = {
    "Top level": Config,
    "The sending app: `dingtalk:`": DingTalkConfig,
    "Recipient groups: `recipients:`": RecipientGroup,
    "A report": Report,
}
# A default cell that is a word about the default, not a value: nothing to compare.
WORDS = re.compile(r"^(|required.*|inferred|top-level|column names|`dingtalk\.receipts`)$")


def _rows(heading: str) -> list[list[str]]:
    lines = [line for line in section(PAGE, heading).splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in lines[1:]]


def _keys(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


def _user_keys(model: type[BaseModel]) -> set[str]:
    return {f for f in model.model_fields if f"{model.__name__}.{f}" not in INTERNAL}


@pytest.mark.parametrize("heading", list(TABLES))
def test_each_hand_written_table_names_exactly_the_keys_its_model_accepts(heading: str) -> None:
    named = [key for row in _rows(heading) for key in _keys(row[0])]
    assert len(named) == len(set(named)), f"a key is listed twice under {heading!r}"
    assert set(named) == _user_keys(TABLES[heading])


def _stated_defaults(heading: str) -> dict[str, str]:
    """key -> the default as the page writes it: a table's default column, else `(default X` in prose."""
    stated = {}
    for row in _rows(heading):
        if len(row) == 3:
            if not WORDS.match(row[1]):
                stated.update({key: row[1].strip("`") for key in _keys(row[0])})
        elif found := re.search(r"\(default:? `?([^`;,)]+)`?[;,)]", row[1]):
            stated.update({key: found[1] for key in _keys(row[0])})
    return stated


@pytest.mark.parametrize("heading", ["The sending app: `dingtalk:`", "A report"])
def test_every_default_the_page_states_is_the_models_default(heading: str) -> None:
    model = TABLES[heading]
    stated = _stated_defaults(heading)
    assert len(stated) >= 5, f"the defaults under {heading!r} were not found: {stated}"
    default = model.model_validate(MINIMAL[model])
    wrong = {}
    for key, text in stated.items():
        documented = model.model_validate({**MINIMAL[model], key: yaml.safe_load(text)})
        if getattr(documented, key) != getattr(default, key):
            wrong[key] = (text, getattr(default, key))
    assert wrong == {}, "documented default -> the model's"
