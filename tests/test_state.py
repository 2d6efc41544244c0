"""The state store: location, versioned schema, userid cache expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dispatcher import clock
from dispatcher.errors import StateError
from dispatcher.store.db import SCHEMA_VERSION, StateStore, resolve_sqlite_url, state_url
from dispatcher.store.userids import UseridCache

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end


def test_default_state_url_is_beside_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPATCHER_STATE_URL", raising=False)
    assert state_url(tmp_path) == f"sqlite:///{tmp_path / '.dispatcher' / 'state.db'}"
    assert state_url(tmp_path, "sqlite:///s.db") == f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("DISPATCHER_STATE_URL", "postgresql+psycopg://u@h/db")
    assert state_url(tmp_path, "sqlite:///s.db") == "postgresql+psycopg://u@h/db"


def test_relative_sqlite_paths_resolve_against_the_config_folder():
    assert resolve_sqlite_url("sqlite:///demo.db", Path("/srv/reports")) == "sqlite:////srv/reports/demo.db"
    assert resolve_sqlite_url("sqlite:////abs/x.db", Path("/srv")) == "sqlite:////abs/x.db"
    assert resolve_sqlite_url("postgresql://h/db", Path("/srv")) == "postgresql://h/db"


def test_schema_is_created_on_first_use_and_versioned(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'sub' / 'state.db'}")
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    again = StateStore(f"sqlite:///{tmp_path / 'sub' / 'state.db'}")  # idempotent
    assert again.schema_version() == SCHEMA_VERSION


def test_a_newer_schema_is_refused_with_a_hint(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dispatcher_meta SET value = :v WHERE key = 'schema'"), {"v": SCHEMA_VERSION + 1}
        )
    with pytest.raises(StateError, match="newer than this release"):
        StateStore(url)


def test_userid_cache_expires_after_max_age(tmp_path, monkeypatch):
    store = UseridCache(StateStore(f"sqlite:///{tmp_path / 'state.db'}"))
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: t0)
    store.put_userids("key", {"13800000000": "u1"})
    monkeypatch.setattr(clock, "now", lambda: t0 + timedelta(days=6, hours=23))
    assert store.get_userids("key", ["13800000000"], timedelta(days=7)) == {"13800000000": "u1"}
    assert store.get_userids("other-app", ["13800000000"], timedelta(days=7)) == {}
    monkeypatch.setattr(clock, "now", lambda: t0 + timedelta(days=7, seconds=1))
    assert store.get_userids("key", ["13800000000"], timedelta(days=7)) == {}


def test_unreachable_state_store_is_a_state_error_without_password():
    with pytest.raises(StateError) as info:
        StateStore("postgresql+psycopg://user:hunter2@127.0.0.1:1/db?connect_timeout=2")
    assert "hunter2" not in str(info.value)
