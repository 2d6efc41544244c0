"""Catch-up planning: pure, no clock, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatcher.daemon.catchup import plan
from dispatcher.schedule import parse_schedule

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SH = ZoneInfo("Asia/Shanghai")
EVERY_2S = parse_schedule({"every": "2s"})
DAILY_9 = parse_schedule("0 9 * * *")
T0 = datetime(2026, 11, 28, 1, 0, 0, tzinfo=UTC)  # 09:00 in Shanghai


def utc(ts: list[datetime]) -> list[datetime]:
    return [t.astimezone(UTC) for t in ts]


def test_on_time_fire_runs_whatever_the_policy():
    for policy in ("last", "all", "none"):
        p = plan(
            EVERY_2S,
            SH,
            now=T0 + timedelta(milliseconds=20),
            last_recorded=T0 - timedelta(seconds=2),
            recorded=set(),
            policy=policy,
            grace=3600,
        )
        assert utc(p.run) == [T0] and p.missed == [], policy


def test_after_a_crash_last_runs_the_newest_overdue_and_records_the_rest_missed():
    now = T0 + timedelta(seconds=10, milliseconds=500)  # down since T0; 10 s of fire times
    p = plan(EVERY_2S, SH, now=now, last_recorded=T0, recorded={T0}, policy="last", grace=3600)
    assert utc(p.run) == [T0 + timedelta(seconds=8), T0 + timedelta(seconds=10)]  # newest overdue + on time
    assert utc(p.missed) == [T0 + timedelta(seconds=s) for s in (2, 4, 6)]


def test_all_runs_every_overdue_fire_time_oldest_first():
    now = T0 + timedelta(seconds=10, milliseconds=500)
    p = plan(EVERY_2S, SH, now=now, last_recorded=T0, recorded={T0}, policy="all", grace=3600)
    assert utc(p.run) == [T0 + timedelta(seconds=s) for s in (2, 4, 6, 8, 10)]
    assert p.missed == []


def test_none_records_overdue_as_missed_but_runs_on_time():
    now = T0 + timedelta(seconds=10, milliseconds=500)
    p = plan(EVERY_2S, SH, now=now, last_recorded=T0, recorded={T0}, policy="none", grace=3600)
    assert utc(p.run) == [T0 + timedelta(seconds=10)]
    assert utc(p.missed) == [T0 + timedelta(seconds=s) for s in (2, 4, 6, 8)]


def test_outside_grace_is_missed():
    now = T0 + timedelta(hours=2)  # daily 09:00 run is 2 h late, grace 1 h
    p = plan(
        DAILY_9, SH, now=now, last_recorded=T0 - timedelta(days=1), recorded=set(), policy="all", grace=3600
    )
    assert p.run == [] and utc(p.missed) == [T0]


def test_within_grace_a_daily_run_is_caught_up_with_its_own_fire_time():
    now = T0 + timedelta(minutes=20)
    p = plan(DAILY_9, SH, now=now, last_recorded=None, recorded=set(), policy="last", grace=3600)
    assert utc(p.run) == [T0] and p.missed == []


def test_a_new_report_does_not_record_history_as_missed():
    now = T0 + timedelta(hours=5)
    p = plan(DAILY_9, SH, now=now, last_recorded=None, recorded=set(), policy="last", grace=3600)
    assert p.run == [] and p.missed == []


def test_run_on_start_runs_the_last_fire_time_of_a_new_report_even_outside_grace():
    now = T0 + timedelta(hours=5)
    p = plan(
        DAILY_9, SH, now=now, last_recorded=None, recorded=set(), policy="last", grace=3600, run_on_start=True
    )
    assert utc(p.run) == [T0]


def test_run_on_start_does_nothing_once_the_ledger_has_rows():
    now = T0 + timedelta(hours=5)
    p = plan(
        DAILY_9, SH, now=now, last_recorded=T0, recorded={T0}, policy="last", grace=3600, run_on_start=True
    )
    assert p.run == [] and p.missed == []


def test_recorded_fire_times_are_never_planned_again():
    now = T0 + timedelta(seconds=10, milliseconds=500)
    done = {T0 + timedelta(seconds=s) for s in (0, 2, 4, 6, 8, 10)}
    p = plan(EVERY_2S, SH, now=now, last_recorded=T0, recorded=done, policy="all", grace=3600)
    assert p.run == [] and p.missed == []


def test_backlog_is_bounded():
    now = T0 + timedelta(days=3)
    p = plan(EVERY_2S, SH, now=now, last_recorded=T0, recorded=set(), policy="none", grace=3600)
    assert len(p.run) + len(p.missed) <= 1000
    assert utc(p.missed)[-1] < now


def test_a_new_frequent_report_owes_only_its_latest_fire_time():
    now = T0 + timedelta(seconds=1, milliseconds=500)
    p = plan(EVERY_2S, SH, now=now, last_recorded=None, recorded=set(), policy="all", grace=3600)
    assert utc(p.run) == [T0] and p.missed == []
    p = plan(EVERY_2S, SH, now=now, last_recorded=None, recorded=set(), policy="none", grace=3600)
    assert utc(p.run) == [] and utc(p.missed) == [T0]
