"""A daemon that produces every kind of series the alert rules and the dashboard read.

Shared by tests/test_metrics_ops.py and tests/test_prometheus.py. Against the `sandbox` fixture (a
real server the daemon reaches through DINGTALK_API_BASE, so the monthly quota is counted, which
`--sandbox` skips), one process runs:
- `tick`: sent every 2 s (runs, deliveries, receipts, claim lag, API calls);
- `grouped`: to the team and to a group robot whose secret is wrong, so the sandbox refuses the robot
  (310000) and the run ends `partial`;
- `broken`: a query on a table that does not exist, so every run fails and alerts the admins;
and `dingtalk.monthly_quota` is small enough that the month's calls pass 80 % within seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dispatcher.sandbox import Sandbox
from tests.daemon_harness import DaemonProcess, Daemons, config_text, make_source, replace_file, report

ROBOT = "team-group"
ROBOT_TOKEN = "monitoring-robot-token"
QUOTA = 30


def reports() -> dict[str, dict[str, Any]]:
    return {
        "tick": report("心跳"),
        "grouped": report("群报", every="3s", robots=[ROBOT]),
        "broken": report("坏报", every="3s", sql="SELECT n FROM no_such_table", retries=0),
    }


def write_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make_source(folder / "src.db")
    doc = yaml.safe_load(config_text(reports()))
    doc["dingtalk"]["monthly_quota"] = QUOTA
    robot = {"webhook": "${MONITORING_ROBOT_WEBHOOK}", "secret": "${MONITORING_ROBOT_SECRET}"}
    doc["robots"] = {ROBOT: robot}
    return replace_file(folder / "reports.yaml", yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def start_daemon(daemons: Daemons, sandbox: Sandbox, folder: Path) -> DaemonProcess:
    """The daemon with its health port on a free loopback port; the robot answers only its own secret."""
    sandbox.add_robot(ROBOT, ROBOT_TOKEN, secret="SEC-the-robots-own-secret")
    env = daemons.env(
        MONITORING_ROBOT_WEBHOOK=f"{sandbox.url}/robot/send?access_token={ROBOT_TOKEN}",
        MONITORING_ROBOT_SECRET="SEC-a-secret-the-robot-never-had",
    )
    return daemons.start(write_project(folder), "--health-port", "0", env=env)
