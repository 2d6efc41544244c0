"""Scenario 10, the soak: three replicas on one PostgreSQL state database at DingTalk's ceiling.

48 reports fire every minute, each to its own 100 people (the quick run: every 15 s to 25
people, so the window starts sooner): 4,800 recipients a minute against the sandbox's 5,000 and
20 calls/s per API. The replicas share one reports.yaml, which gives each the app's full
allowance (`recipients_per_minute: 5000`, `calls_per_second: 20`): the pacing windows live in
the state store, so the replicas together stay under both limits, and the survivors of a kill
get the whole allowance instead of their shares of it.

During the run one replica is killed with SIGKILL at a random moment and started again 60 s
later (as systemd's Restart= would; the restarted process reads what was sent this minute from
the store, so the delay is the scenario's, not a workaround). Another replica is stopped with
SIGSTOP at a random moment for 30 s.
The quick run scales this down: SIGSTOP for 10 s, and the kill lands at a random moment when the
replica holds no claim, since a claim it held waits for the reaper (run_timeout after its last
heartbeat, then a retry), which the hour has time for and 60 s barely has. If no such moment comes
by 60% of the window, the kill lands anyway (a quick run without a kill would pass untested), and
the quick run_timeout of 25 s lets the reaper retry what it held within the drain. (A claim taken
between the check and the kill is reaped and retried too: the drain below waits for every retry
owed, not only a final state.)

After the run the replicas keep going until every fire time of the window has a final ledger
row (the killed replica's claim is reaped after run_timeout and retried), then the ledger and
the sandbox are compared fire time by fire time: no duplicate delivery, no gap.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.child import userid
from bench.common import (
    LATENCY,
    Outcome,
    Row,
    dispatcher_cmd,
    mb,
    proc_memory_mb,
    sandbox_env,
    seconds,
    wait_until,
)
from bench.daemonproc import ORDERS_SQL, DaemonProcess, dingtalk_from_env, make_orders_db, write_config
from bench.servers import postgres_schema
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "10 soak"
REPORTS = 48
CALLS_PER_SECOND = 20
PER_MINUTE = 5000
REPLICAS = 3
ZONE = ZoneInfo("Asia/Shanghai")
TITLE = re.compile(r"浸泡 (\d+)")
FOOTER = re.compile(r"数据截至 (\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?)")
FINAL = ("sent", "partial", "failed", "skipped", "missed", "suppressed")
CLAIM_LAG_P99 = 2.0
RESTART_AFTER = 60.0
RSS_SLOPE_MB_PER_10_MIN = 1.0


@dataclass
class Replica:
    name: str
    folder: Path
    env: dict[str, str]
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    rss: list[tuple[float, float, int]] = field(default_factory=list)  # (time, MB, incarnation)

    def start(self) -> None:
        self.incarnation += 1
        log = (self.folder / f"{self.name}-{self.incarnation}.log").open("wb")
        cmd = dispatcher_cmd("run", "-c", str(self.config), "--log-format", "json")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.folder)
        log.close()

    @property
    def daemon(self) -> DaemonProcess:
        assert self.proc is not None
        return DaemonProcess(self.proc, self.folder / f"{self.name}-{self.incarnation}.log")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class Load:
    period: int  # seconds between a report's fire times
    people: int  # each report's own recipients

    def group(self, i: int) -> set[str]:
        return {userid(i * self.people + n) for n in range(1, self.people + 1)}


FULL_LOAD, QUICK_LOAD = Load(60, 100), Load(15, 25)


def build(folder: Path, run_timeout: float, load: Load) -> Path:
    make_orders_db(folder / "src.db", rows=200, seed=3)
    groups = {f"g{i:02d}": {"userids": sorted(load.group(i))} for i in range(REPORTS)}
    reports = {
        f"s{i:02d}": {
            "title": f"浸泡 {i:02d}",
            "schedule": {"every": f"{load.period}s"},
            "source": "src",
            "sql": ORDERS_SQL,
            "to": [f"g{i:02d}"],
            "on_empty": "send",
            "run_timeout": run_timeout,
            "retry_delay": 5,
        }
        for i in range(REPORTS)
    }
    config = {
        "timezone": "Asia/Shanghai",
        "sources": {"src": "sqlite:///src.db"},
        "dingtalk": dingtalk_from_env(
            calls_per_second=CALLS_PER_SECOND, recipients_per_minute=PER_MINUTE, receipts="full"
        ),
        "daemon": {"workers": 64, "shutdown_timeout": 5},
        "recipients": groups,
        "reports": reports,
    }
    return write_config(folder / "reports.yaml", config)


def run(duration: float, pause: float, seed: int | None = None) -> Outcome:
    rng = random.Random(seed)
    load = QUICK_LOAD if duration <= 120 else FULL_LOAD
    options = SandboxOptions(
        latency=LATENCY,
        generated_users=(REPORTS + 1) * load.people,
        calls_per_second=CALLS_PER_SECOND,
        recipients_per_minute=PER_MINUTE,
        per_user_daily=100_000,
    )
    # Above the longest pacing wait a run meets at the ceiling: the minute full, and a killed replica's
    # in-flight reservations counting until they go stale (dispatcher.store.pacewindows.STALE_MS).
    run_timeout = 25.0 if duration <= 120 else 120.0
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, postgres_schema() as state_url:
        folder = Path(tmp)
        config = build(folder, run_timeout, load)
        with Sandbox(options, port=0) as sb:
            env = sandbox_env(sb.url, DISPATCHER_STATE_URL=state_url)
            replicas = [Replica(name, folder, env, config) for name in ("a", "b", "c")]
            try:
                data = _drive(replicas, duration, pause, rng, load, state_url)
                data["drained"] = _drain(state_url, data, load, run_timeout + 60)
            finally:
                stopping = time.monotonic()
                for replica in replicas:
                    replica.terminate()  # all at once: each waits up to its shutdown_timeout
                for replica in replicas:
                    replica.stop()
                stop_seconds = time.monotonic() - stopping
            data |= _compare(state_url, sb.tasks(), sb.calls(), data, load)
            data["stop_seconds"] = stop_seconds
        data["rss_slopes"] = {r.name: _slope(r.rss, data["warm_after"], data["warm_up"]) for r in replicas}
        data["rss_samples"] = {r.name: r.rss for r in replicas}
    return _outcome(data, duration, pause, load)


def _drive(
    replicas: list[Replica], duration: float, pause: float, rng: random.Random, load: Load, state_url: str
) -> dict[str, Any]:
    spawned = time.time()
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.daemon.started_at(timeout=90)
    ready = time.time()
    first = _next_fire(datetime.now(UTC), load.period)  # the window's first fire time
    began = first.timestamp()
    killed, stopped = rng.sample(replicas, 2)
    kill_at = began + rng.uniform(0.15, 0.5) * duration
    stop_at = began + rng.uniform(0.3, 0.9) * duration - pause
    events: list[tuple[float, str]] = []
    restarted = stopped_since = None
    next_sample = 0.0
    between = duration <= 120  # the quick run kills between runs: see _holds_no_claim
    while time.time() < began + duration:
        now = time.time()
        # Mid-period (its runs of the last fire time done, the next not yet due) and no claim held.
        mid = 6 <= now % load.period <= load.period - 3
        quiet = kill_at <= now and between and mid and _holds_no_claim(killed, state_url)
        overdue = now >= began + 0.6 * duration  # no quiet moment came: kill anyway
        if (
            kill_at <= now
            and not any(e[1].startswith("kill") for e in events)
            and (quiet or overdue or not between)
        ):
            assert killed.proc is not None
            killed.proc.kill()
            killed.proc.wait()
            events.append((now, f"kill -9 {killed.name}"))
            restarted = now + RESTART_AFTER
        if restarted is not None and now >= restarted:
            killed.start()
            events.append((now, f"restart {killed.name}"))
            restarted = None
        if stop_at <= now and stopped_since is None and not any(e[1].startswith("SIGSTOP") for e in events):
            assert stopped.proc is not None
            stopped.proc.send_signal(signal.SIGSTOP)
            stopped_since = now
            events.append((now, f"SIGSTOP {stopped.name}"))
        if stopped_since is not None and now >= stopped_since + pause:
            assert stopped.proc is not None
            stopped.proc.send_signal(signal.SIGCONT)
            events.append((now, f"SIGCONT {stopped.name}"))
            stopped_since = None
        if now >= next_sample:
            _sample_rss(replicas, now)
            next_sample = now + (10.0 if duration > 120 else 2.0)
        time.sleep(0.1)
    if stopped_since is not None:
        assert stopped.proc is not None
        stopped.proc.send_signal(signal.SIGCONT)
        events.append((time.time(), f"SIGCONT {stopped.name}"))
    if restarted is not None:
        killed.start()
    last = _next_fire(datetime.fromtimestamp(began + duration, UTC), load.period) - timedelta(
        seconds=load.period
    )
    return {
        "first_fire": first,
        "last_fire": last,
        "events": [(datetime.fromtimestamp(t, UTC).isoformat(), what) for t, what in events],
        "warm_after": began + min(300.0, duration / 6),
        "warm_up": min(300.0, duration / 6),
        "start_seconds": ready - spawned,
        "first_fire_wait": began - ready,
    }


def _drain(state_url: str, data: dict[str, Any], load: Load, timeout: float) -> float:
    """Seconds until every fire time of the window has a final ledger row (the reaper's work included)."""
    started = time.monotonic()
    expected = _expected(data, load)

    left: list[tuple[float, list[str]]] = data.setdefault("drain_left", [])

    def settled() -> bool:
        final = {(r["report_id"], r["fire_time"]) for r in _ledger(state_url) if _final(r)}
        if not left or time.monotonic() - started - left[-1][0] >= 10:
            open_ = sorted(f"{r} {t:%H:%M:%S}" for r, t in expected - final)
            left.append((time.monotonic() - started, open_[:5] + ([f"... {len(open_)}"] if open_ else [])))
        return expected <= final

    try:
        wait_until(settled, "every fire time of the window to finish", timeout=timeout, every=1.0)
    except TimeoutError:
        pass  # what is left shows up as gaps
    return time.monotonic() - started


def _final(row: dict[str, Any]) -> bool:
    """A final state, and no retry still owed: a reaped claim is failed first, then retried."""
    return row["state"] in FINAL and row["next_retry_at"] is None


def _expected(data: dict[str, Any], load: Load) -> set[tuple[str, datetime]]:
    first, last = data["first_fire"], data["last_fire"]
    steps = int((last - first).total_seconds() // load.period) + 1
    return {
        (f"s{i:02d}", first + timedelta(seconds=load.period * m))
        for i in range(REPORTS)
        for m in range(steps)
    }


def _holds_no_claim(replica: Replica, state_url: str) -> bool:
    """The quick run kills a replica that holds no `running` row: a claim it held would wait for the
    reaper (run_timeout, then a retry), which the hour-long soak has time for and 60 s does not."""
    assert replica.proc is not None
    owner = f":{replica.proc.pid}"
    return not any(r["state"] == "running" and (r["owner"] or "").endswith(owner) for r in _ledger(state_url))


def _sample_rss(replicas: list[Replica], now: float) -> None:
    for replica in replicas:
        proc = replica.proc
        if proc is None or proc.poll() is not None:
            continue
        try:
            replica.rss.append((now, proc_memory_mb(proc.pid)["VmRSS"], replica.incarnation))
        except (OSError, KeyError):
            continue


def _next_fire(at: datetime, period: int) -> datetime:
    """The first fire time after `at` of an interval that divides the day (Shanghai is UTC+8)."""
    seconds_ = int(at.timestamp()) // period * period + period
    return datetime.fromtimestamp(seconds_, UTC)


def _compare(
    state_url: str, tasks: list[dict[str, Any]], calls: list[dict[str, Any]], data: dict[str, Any], load: Load
) -> dict[str, Any]:
    expected = _expected(data, load)
    rows = _ledger(state_url)
    # `suppressed`: a retry whose content DingTalk had already delivered (143106) -- the attempt
    # that was killed after its send. The sandbox comparison below checks that it did arrive.
    sent = {(r["report_id"], r["fire_time"]) for r in rows if r["state"] in ("sent", "suppressed")}
    delivered: dict[tuple[str, datetime], Counter[str]] = defaultdict(Counter)
    for task in tasks:
        key = _task_key(task["msg"])
        if key is None:
            continue
        result = task["send_result"]
        for person in result["read_user_id_list"] + result["unread_user_id_list"]:
            delivered[key][person] += 1
    group = {f"s{i:02d}": load.group(i) for i in range(REPORTS)}
    sandbox_gaps = sorted(k for k in expected if set(delivered.get(k, {})) != group[k[0]])
    in_window = [r for r in rows if (r["report_id"], r["fire_time"]) in expected]
    lags = sorted(_lag(r) for r in in_window if r["attempts"] == 1)
    disrupted = min((datetime.fromisoformat(at) for at, _ in data["events"]), default=None)
    steady = sorted(
        _lag(r) for r in in_window if r["attempts"] == 1 and (disrupted is None or r["fire_time"] < disrupted)
    )
    slow = sorted(
        (
            r
            for r in in_window
            if r["attempts"] == 1 and (r["started_at"] - r["fire_time"]).total_seconds() > 1
        ),
        key=lambda r: r["started_at"] - r["fire_time"],
    )
    return {
        "slow_claims": [f"{r['report_id']} {r['fire_time']:%H:%M:%S} +{_lag(r):.2f}s" for r in slow[-8:]],
        "not_sent": [
            f"{r['report_id']} {r['fire_time']:%H:%M:%S} {r['state']} {r['error']}"
            for r in in_window
            if r["state"] != "sent"
        ][:8],  # fmt: skip
        "expected": len(expected),
        "ledger_rows": len(in_window),
        "ledger_states": dict(Counter(r["state"] for r in in_window)),
        "ledger_gaps": len(expected - sent),
        "ledger_gap_examples": [f"{r} {t.isoformat()}" for r, t in sorted(expected - sent)[:5]],
        "sandbox_gaps": len(sandbox_gaps),
        "sandbox_gap_examples": [f"{r} {t.isoformat()}" for r, t in sandbox_gaps[:5]],
        "duplicate_deliveries": sum(n - 1 for c in delivered.values() for n in c.values() if n > 1),
        "forbidden": dict(Counter(f["code"] for t in tasks for f in t["send_result"]["forbidden_list"])),
        "throttled_90018": sum(1 for c in calls if c["errcode"] == 90018),
        "calls": len(calls),
        "claim_lag": {"p50": _pct(lags, 50), "p99": _pct(lags, 99), "max": lags[-1] if lags else None},
        "claim_lag_steady": {
            "p50": _pct(steady, 50),
            "p99": _pct(steady, 99),
            "max": steady[-1] if steady else None,
            "n": len(steady),
        },
    }


def _lag(row: dict[str, Any]) -> float:
    return float((row["started_at"] - row["fire_time"]).total_seconds())


def _ledger(state_url: str) -> list[dict[str, Any]]:
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    store = StateStore(state_url)
    try:
        found = Ledger(store).history(None, limit=1_000_000)
    finally:
        store.close()
    return [
        {
            "report_id": r.report_id,
            "fire_time": r.fire_time,
            "state": r.state,
            "attempts": r.attempts,
            "started_at": r.started_at,
            "owner": r.owner,
            "next_retry_at": r.next_retry_at,
            "error": (r.error or "")[:120],
        }
        for r in found
    ]


def _task_key(msg: dict[str, Any]) -> tuple[str, datetime] | None:
    markdown = msg.get("markdown", {})
    title, footer = TITLE.search(markdown.get("title", "")), FOOTER.search(markdown.get("text", ""))
    if title is None or footer is None:
        return None
    fire = datetime.fromisoformat(footer[1]).replace(tzinfo=ZONE).astimezone(UTC)
    return f"s{int(title[1]):02d}", fire


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(round(pct / 100 * (len(values) - 1))))]


def _slope(samples: list[tuple[float, float, int]], warm_after: float, warm_up: float) -> float | None:
    """Least-squares RSS growth of the replica's last incarnation after warm-up, in MB per 10 min.

    A restarted replica warms up again (its first run imports pandas and fills its caches), so its
    warm-up counts from its own start, not only from the window's.
    """
    if not samples:
        return None
    last = samples[-1][2]
    born = min(t for t, _, inc in samples if inc == last)
    since = max(warm_after, born + warm_up)
    points = [(t, v) for t, v, inc in samples if inc == last and t >= since]
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 600 if var else None


def _outcome(data: dict[str, Any], duration: float, pause: float, load: Load) -> Outcome:
    out = Outcome(NAME, data=data)
    lag, steady = data["claim_lag"], data["claim_lag_steady"]
    slopes = {k: v for k, v in data["rss_slopes"].items() if v is not None}
    slope_text = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(slopes.items())) or "too few samples"
    every = f"{REPORTS} reports × {load.people} people every {load.period} s"
    scale = f"{seconds(duration)}, {every}, {REPLICAS} replicas"
    failed = sum(data["ledger_states"].get(s, 0) for s in ("failed", "partial"))
    dropped = data["forbidden"].get("143103", 0)
    out.rows += [
        Row(
            NAME,
            f"duplicate deliveries ({scale}; {', '.join(e[1] for e in data['events'])}, SIGSTOP {pause:g} s)",
            f"{data['duplicate_deliveries']}",
            f"{data['expected']:,} fire times",
            "",
            "0",
            data["duplicate_deliveries"] == 0,
        ),
        Row(
            NAME,
            "gaps: fire times without a sent (or 143106-suppressed) ledger row / without every recipient "
            "reached in the sandbox",
            f"{data['ledger_gaps']} / {data['sandbox_gaps']}",
            f"ledger {data['ledger_states']}",
            "",
            "0 / 0",
            data["ledger_gaps"] == 0 and data["sandbox_gaps"] == 0,
        ),
        Row(
            NAME,
            "throttles (90018) answered by waiting: runs failed or partial; recipients refused 143103",
            f"{failed}; {dropped}",
            f"90018 answers {data['throttled_90018']:,} of {data['calls']:,} calls",
            "",
            "0; 0",
            failed == 0 and dropped == 0,
        ),
        Row(
            NAME,
            f"claim lag (ledger claim − fire time) p50 / p99 / max, three replicas up ({steady['n']} claims "
            "before the first signal)",
            f"{_s(steady['p50'])} / {_s(steady['p99'])} / {_s(steady['max'])}",
            "",
            "",
            f"p99 < {CLAIM_LAG_P99:g} s",
            steady["p99"] is not None and steady["p99"] < CLAIM_LAG_P99,
        ),
        Row(
            NAME,
            "claim lag over the whole window, kill and stop included (reported, never fails --check): a "
            "report's next claim waits for its previous run, which waits for pacing while the backlog "
            "of a killed or stopped replica's reports drains",
            f"{_s(lag['p50'])} / {_s(lag['p99'])} / {_s(lag['max'])}",
            "",
            "",
            f"p99 < {CLAIM_LAG_P99:g} s",
            lag["p99"] is not None and lag["p99"] < CLAIM_LAG_P99,
            gates=False,
        ),
    ]
    if duration > 120:
        out.rows.append(
            Row(
                NAME,
                "RSS slope of each replica after warm-up, MB per 10 min",
                slope_text,
                "",
                "",
                f"< {RSS_SLOPE_MB_PER_10_MIN:g}",
                bool(slopes) and all(abs(v) < RSS_SLOPE_MB_PER_10_MIN for v in slopes.values()),
            )
        )
    else:
        peak = max((v for s in data["rss_samples"].values() for _, v, _ in s), default=0.0)
        out.rows.append(
            Row(
                NAME,
                "RSS slope after warm-up, MB per 10 min (the quick run is too short to judge)",
                f"{slope_text}; peak {mb(peak)}",
            )  # fmt: skip
        )
    return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
