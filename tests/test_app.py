"""The composition root: two apps in one process share no token, pacer or secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.app import open_app, open_store
from dispatcher.config.check import load_config
from dispatcher.redact import redact
from dispatcher.sandbox.server import Sandbox, SandboxOptions

CONFIG = """\
timezone: Asia/Shanghai
sources:
  shop: sqlite:///shop.db
dingtalk:
  app_key: dingsandboxkey
  app_secret: {secret}
  agent_id: 100000001
  api_base: {api_base}
recipients:
  team: {{userids: [user001]}}
reports:
  daily:
    title: 日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT 1 AS n"
    to: [team]
"""


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(app_secret="shared-secret-1")) as sandbox:
        yield sandbox


def project(folder: Path, api_base: str, secret: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "reports.yaml").write_text(CONFIG.format(api_base=api_base, secret=secret), encoding="utf-8")
    (folder / "shop.db").touch()
    return folder / "reports.yaml"


def test_two_apps_on_the_same_app_key_and_server_fetch_their_own_tokens(tmp_path: Path, box: Sandbox) -> None:
    first = load_config(project(tmp_path / "a", box.url, "shared-secret-1"))
    second = load_config(project(tmp_path / "b", box.url, "shared-secret-1"))
    with open_app(first) as a, open_app(second) as b:
        a.client.token(), b.client.token()
        assert len(box.calls("gettoken")) == 2, "the second app must not reuse the first app's cached token"
        assert a.registry is not b.registry
        assert a.client._http.pacer is not b.client._http.pacer  # pacing state is per app too
        a.client.token()
        assert len(box.calls("gettoken")) == 2, "each app still caches its own token"


def test_two_apps_on_two_sandboxes_keep_their_secrets_apart(tmp_path: Path) -> None:
    with (
        Sandbox(SandboxOptions(app_secret="secret-of-app-a")) as box_a,
        Sandbox(SandboxOptions(app_secret="secret-of-app-b")) as box_b,
    ):
        first = load_config(project(tmp_path / "a", box_a.url, "secret-of-app-a"))
        second = load_config(project(tmp_path / "b", box_b.url, "secret-of-app-b"))
        with open_app(first) as a:
            with open_app(second) as b:
                token_a, token_b = a.client.token(), b.client.token()
                assert {"secret-of-app-a", token_a} <= set(a.secrets.values())
                assert not {"secret-of-app-b", token_b} & set(a.secrets.values())
                assert not {"secret-of-app-a", token_a} & set(b.secrets.values())
                # Logging is process-wide: while both apps are open, both apps' values are masked.
                assert redact(f"{token_a} {token_b}") == "*** ***"
                assert box_a.calls("gettoken") and box_b.calls("gettoken")
            assert redact(token_b) == token_b, "a closed app's values are released"
            assert redact(token_a) == "***", "the open app's token is still masked"


def test_an_app_closes_its_store_and_sources(tmp_path: Path, box: Sandbox) -> None:
    config = load_config(project(tmp_path / "a", box.url, "shared-secret-1"))
    with open_app(config) as app:
        assert app.ledger.last_runs() == {}
        services = app.services()
        assert services is app.services() and services.client is app.client
    with open_store(config, create=False) as store:
        assert store is not None, "the app created the state store on first use"
