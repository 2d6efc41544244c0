"""What the alert, split, backfill and resend tests share: a project on a real SQLite data file, a
real sandbox over HTTP, and `Services` built as the daemon builds them, on any state store URL."""

from __future__ import annotations

import sqlite3
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials
from dispatcher.run.delivery import make_client
from dispatcher.run.metrics import Metrics
from dispatcher.run.prepare import build_sources
from dispatcher.run.runner import execute
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox
from dispatcher.store.db import StateStore
from dispatcher.store.ledger import Ledger


def write_project(folder: Path, sandbox: Sandbox, reports: str, *, state: str | None = None,
                  recipients: str = "") -> Path:  # fmt: skip
    """reports.yaml with the sandbox's credentials; `reports` is the YAML under `reports:`."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = sandbox.options
    text = textwrap.dedent(f"""\
        timezone: Asia/Shanghai
        sources:
          data: sqlite:///data.db
        dingtalk:
          app_key: {opts.app_key}
          app_secret: {opts.app_secret}
          agent_id: {opts.agent_id}
          api_base: {sandbox.url}
          receipts: "off"
        recipients:
          admins: {{userids: [oncall01]}}
          ops: {{userids: [user004, user005]}}
        """)
    text += textwrap.indent(textwrap.dedent(recipients), "  ")
    if state is not None:
        text += f"state: {state}\n"
    text += "reports:\n" + textwrap.indent(textwrap.dedent(reports), "  ")
    (folder / "reports.yaml").write_text(text, encoding="utf-8")
    return folder / "reports.yaml"


def data(folder: Path, script: str) -> None:
    """Run SQL against the project's data.db (the report's source)."""
    conn = sqlite3.connect(folder / "data.db")
    try:
        conn.executescript(script)
        conn.commit()
    finally:
        conn.close()


@contextmanager
def services(config_path: Path, sandbox: Sandbox, owner: str = "test-owner") -> Iterator[Services]:
    from dispatcher.store.db import state_url

    config = load_config(config_path)
    store = StateStore(state_url(config.base_dir, config.state))
    opts = sandbox.options
    client = make_client(config, Credentials(opts.app_key, opts.app_secret, opts.agent_id), store)
    sources = build_sources(config)
    try:
        yield Services(config, sources, client, Ledger(store), Metrics(), owner)
    finally:
        client.close()
        sources.dispose()
        store.close()


def run_at(svc: Services, report_id: str, fire: datetime) -> str:
    """Claim and execute one fire time, as a daemon would; the run's final state."""
    run = svc.ledger.claim(report_id, fire, svc.owner)
    assert run is not None, f"{report_id} at {fire} was claimed already"
    return execute(svc, svc.config.reports[report_id], run)


def texts(sandbox: Sandbox, userid: str) -> list[str]:
    """The markdown (or text) bodies `userid` received, oldest first."""
    return [_body(m["msg"]) for m in sorted(sandbox.messages(userid), key=lambda m: int(m["id"]))]


def _body(msg: dict[str, Any]) -> str:
    kind = msg["msgtype"]
    part = msg[kind]
    return str(part.get("text") or part.get("content") or part.get("markdown") or "")
