"""The JSON Schema of reports.yaml: generated from the config models, shipped, and in step with validate."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from dispatcher.cli.main import main
from dispatcher.config import schema as config_schema
from dispatcher.config.check import check_config
from dispatcher.config.docs import DESCRIPTIONS
from tests.conftest import BASE_CONFIG, REPO


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = config_schema.generate()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(yaml.safe_load(text))]


def test_the_shipped_schema_file_is_the_generated_one():
    assert config_schema.shipped() == config_schema.dumps(config_schema.generate()), (
        "regenerate it: dispatcher schema > dispatcher/config/reports.schema.json"
    )


def test_dispatcher_schema_prints_draft_2020_12(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert printed == config_schema.generate()


def test_every_model_field_has_a_description():
    assert config_schema.missing_descriptions() == [], "add a line to dispatcher/config/docs.py"


def test_no_description_is_left_over_from_a_removed_field():
    assert sorted(set(DESCRIPTIONS) - set(config_schema.field_keys())) == []


def test_every_key_has_type_description_and_models_forbid_extra_keys():
    schema = config_schema.generate()
    models = [schema, *schema["$defs"].values()]
    for model in models:
        assert model["additionalProperties"] is False
        for name, prop in model["properties"].items():
            assert prop.get("description"), name
            assert any(k in prop for k in ("type", "anyOf", "$ref")), name
    report = schema["$defs"]["Report"]["properties"]
    assert report["on_empty"]["default"] == "skip"
    assert report["on_empty"]["anyOf"][0]["enum"] == ["skip", "send", "error"]
    assert "id" not in report and "path" not in schema["properties"]


def test_the_shipped_reports_yaml_validates(validator):
    assert errors(validator, (REPO / "reports.yaml").read_text(encoding="utf-8")) == []


def readme_yaml_blocks() -> list[str]:
    """Every ```yaml block of README.md and docs/ (tests/test_manual.py also runs validate on them)."""
    from tests.docs_kit import fenced_blocks

    return [text for _page, _line, text, _mark in fenced_blocks("yaml")]


def test_the_readme_has_yaml_examples():
    assert readme_yaml_blocks()


@pytest.mark.parametrize("block", readme_yaml_blocks())
def test_every_readme_yaml_example_validates(validator, block):
    assert errors(validator, block) == []


def test_the_init_template_validates(validator):
    text = (REPO / "dispatcher" / "ops" / "project" / "reports.yaml").read_text(encoding="utf-8")
    assert errors(validator, text) == []


def test_a_typo_in_a_key_fails_the_schema_as_it_fails_validate(validator, project):
    typo = BASE_CONFIG.replace("    on_empty: send", "    on_emtpy: send")
    assert any("on_emtpy" in e for e in errors(validator, typo))
    (project / "reports.yaml").write_text(typo, encoding="utf-8")
    _config, problems = check_config(project / "reports.yaml")
    assert any("on_emtpy" in p.message for p in problems)


def test_a_typo_in_a_top_level_or_dingtalk_key_fails(validator):
    assert errors(validator, BASE_CONFIG + "timezon: UTC\n")
    assert errors(validator, BASE_CONFIG.replace("  agent_id:", "  agentid:"))


def test_variables_pass_where_numbers_booleans_and_words_are_expected(validator):
    text = BASE_CONFIG.replace(
        "    on_empty: send",
        """\
    on_empty: ${ON_EMPTY:-send}
    enabled: ${DAILY_ENABLED}
    retries: ${RETRIES:-3}
    max_rows: ${MAX_ROWS}
    query_timeout: 90s
    max_bytes: 64MB
    receipts: off
""",
    ).replace("agent_id: ${TEST_DT_AGENT:-}", "agent_id: ${DINGTALK_AGENT_ID}")
    text += "daemon:\n  workers: ${WORKERS:-8}\n  retention: 90d\n"
    assert errors(validator, text) == []


def test_wrong_types_and_words_fail(validator):
    assert errors(validator, BASE_CONFIG.replace("on_empty: send", "on_empty: sometimes"))
    assert errors(validator, BASE_CONFIG.replace("on_empty: send", "on_empty: send\n    retries: many"))
    assert errors(validator, BASE_CONFIG.replace("on_empty: send", "on_empty: send\n    max_rows: 0"))
    assert errors(validator, BASE_CONFIG.replace('schedule: "0 9 * * *"', "schedule: {evry: 30s}"))
    # `to` may be left out (split_by or robots can name the recipients); validate checks that.
    assert errors(validator, BASE_CONFIG.replace("    to: [leads]\n", "    to: leads\n"))
    assert errors(validator, BASE_CONFIG + "  weekly: {title: x}\n")


def test_interval_schedules_and_unquoted_mobiles_pass(validator):
    text = BASE_CONFIG.replace('schedule: "0 9 * * *"', "schedule: {every: 30s}")
    text = text.replace('mobiles: ["13800000000"]', "mobiles: [13800000000]")
    assert errors(validator, text) == []
