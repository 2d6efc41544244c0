"""Templates and `params:` are untrusted: memory bombs and runaway loops end in a clear error, fast."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dispatcher.config.params import render_value
from dispatcher.errors import ConfigError, RenderError
from dispatcher.render import RenderOptions, render

FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
DOUBLING = "{% set a = 'ab' %}" + "{% set a = a ~ a %}" * 34 + "{{ a | length }}"

BOMBS = {
    "concat doubling": DOUBLING,
    "plus doubling": "{% set a = 'ab' %}" + "{% set a = a + a %}" * 34 + "{{ a | length }}",
    "center": "{{ 'x'.center(2000000000) }}",
    "ljust": "{{ 'x'.ljust(2000000000) }}",
    "zfill": "{{ '1'.zfill(2000000000) }}",
    "str.format width": "{{ '{:>2000000000}'.format('x') }}",
    "str.format nested width": "{{ '{:>{}}'.format('x', 2000000000) }}",
    "format_map width": "{{ '{a:>2000000000}'.format_map({'a': 'x'}) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "percent precision": "{{ '%.999999999f' % 1.5 }}",
    "percent star": "{{ '%*d' % (999999999, 1) }}",
    "format filter": "{{ '%0999999999d' | format(1) }}",
    "center filter": "{{ 'x' | center(2000000000) }}",
    "indent filter": "{{ ('x\n' * 1000) | indent(2000000) }}",
    "replace squared": "{% set a = 'x' * 5000 %}{{ a.replace('x', a) }}",
    "replace filter squared": "{% set a = 'x' * 5000 %}{{ a | replace('x', a) }}",
    "join of a big list": "{% set a = 'x' * 90000 %}{{ ([a] * 1000) | join }}",
    "str.join": "{% set a = 'x' * 90000 %}{{ ''.join([a] * 1000) }}",
    "output chunks": "{% for i in range(100000) %}{{ 'x' * 90000 }}{% endfor %}",
    "nested ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}"
    "{% endfor %}",
    "power of a power": "{{ (9 ** 999) ** 999 }}",
    "repeated squaring": "{% set a = 9 ** 999 %}" + "{% set a = a * a %}" * 40 + "{{ a > 1 }}",
    "nested loops over rows": "{% for r in rows %}{% for s in rows %}{% for t in rows %}.{% endfor %}"
    "{% endfor %}{% endfor %}",
}


def options(template: str) -> RenderOptions:
    return RenderOptions(title="炸弹", fire_time=FIRE, template=template)


@pytest.mark.parametrize("template", BOMBS.values(), ids=BOMBS.keys())
def test_a_template_bomb_ends_in_a_render_error_naming_the_limit(template: str) -> None:
    frame = pd.DataFrame({"a": range(200)})
    with pytest.raises(RenderError, match=r"template not allowed.*(past|over|more than|longer)") as caught:
        render(frame, options(template))
    assert "MemoryError" not in str(caught.value)


def test_a_template_that_stays_under_the_limits_renders_as_before() -> None:
    template = (
        "{% for r in rows %}{{ '%05d' % r.a }} {{ '{:>6}'.format(r.a) }} {{ 'x'.center(5) }}|"
        "{% endfor %}{{ ['a', 'b'] | join(',') }} {{ 'abc' | replace('b', 'BB') }} {{ 'ab' ~ 'cd' }}"
    )
    out = render(pd.DataFrame({"a": [1, 2]}), options(template))
    # what `{{ }}` prints is one line of text: runs of spaces collapse, as a phone shows them anyway
    assert "00001 1 x|00002 2 x|a,b aBBc abcd" in out.msg["markdown"]["text"]


@pytest.mark.parametrize(
    "value",
    [
        "{% set a = 'ab' %}" + "{% set a = a ~ a %}" * 34 + "{{ a }}",
        "{{ 'x'.center(2000000000) }}",
        "{{ '{:>2000000000}'.format('x') }}",
        "{{ '%0999999999d' % 1 }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{{ 9 ** 999999 }}",
    ],
    ids=["concat", "center", "format", "percent", "loops", "power"],
)
def test_a_params_bomb_ends_in_a_config_error_naming_the_report_and_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"reports\.bomb\.params\.day.*(past|over|more than)"):
        render_value(value, {"today": "2026-11-28"}, "reports.bomb.params.day")


def test_params_still_render_dates() -> None:
    assert render_value("{{ today | add_days(-1) }}", {"today": "2026-11-28"}, "x") == "2026-11-27"


def test_preview_of_a_bomb_exits_1_with_the_report_named_and_no_traceback(tmp_path: Path) -> None:
    from tests.daemon_harness import project, report

    bomb = report("炸弹", template="{% set a = 'ab' %}" + "{% set a = a ~ a %}" * 34 + "{{ a }}")
    config = project(tmp_path / "p", {"bomb": bomb})
    env = {**os.environ, "DINGTALK_APP_KEY": "k", "DINGTALK_APP_SECRET": "s", "DINGTALK_AGENT_ID": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", "preview", "bomb", "-c", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "report 'bomb'" in done.stderr and "past 1,000,000 characters" in done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
