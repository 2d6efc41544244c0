"""A real `dispatcher run` exports this month's quota calls per endpoint on /metrics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import Daemons, project, report, wait_until

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons


def test_a_running_daemon_exports_the_months_quota_calls_per_endpoint(
    daemons: Daemons, sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = daemons.start(project(tmp_path / "p", {"tick": report("心跳")}), "--health-port", "0")
    url = daemon.wait_for("health.listening").fields["url"]

    def month_calls() -> dict[str, float]:
        text = requests.get(url + "/metrics", timeout=5).text
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        return {s.labels["endpoint"]: s.value for s in samples if s.name == "dispatcher_api_calls_month"}

    wait_until(lambda: month_calls().get("getsendresult", 0) >= 2, "two runs' receipts counted")
    calls = month_calls()
    wire = Counter(c["endpoint"] for c in sandbox.calls())
    assert "gettoken" not in calls and "getbymobile" not in calls, "exempt calls are not counted"
    assert 2 <= calls["asyncsend_v2"] <= wire["asyncsend_v2"]
    assert calls["getsendresult"] <= wire["getsendresult"] and "getsendprogress" not in calls
