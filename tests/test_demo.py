"""The demo shop database and the shipped report queries, on real SQLite files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.demo import shop as demo
from dispatcher.errors import DispatcherError
from tests.conftest import DEMO_END

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
ROOT = Path(__file__).resolve().parents[1]
END = DEMO_END  # a Saturday
YESTERDAY = END - timedelta(days=1)
THRESHOLD = 0.05


def iso(d: date) -> str:
    return d.isoformat()


def sqlite_engine(path: Path) -> sa.Engine:
    return sa.create_engine(sa.URL.create("sqlite", database=str(path)))


def run(engine: sa.Engine, query: str, **params: object) -> tuple[list[str], list[tuple]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text((ROOT / "queries" / f"{query}.sql").read_text()), params)
        return list(result.keys()), [tuple(row) for row in result]


def daily_params(day: date) -> dict[str, str]:
    return {
        "day": iso(day),
        "prev_day": iso(day - timedelta(days=1)),
        "prev_week": iso(day - timedelta(days=7)),
    }


@pytest.fixture(scope="module")
def tables() -> dict[str, list[dict]]:
    return demo.demo_tables(END)


@pytest.fixture(scope="module")
def demo_file(demo_sqlite: Path) -> Path:
    return demo_sqlite  # built once per session by conftest.py; tests here only read it


@pytest.fixture(scope="module")
def engine(demo_file: Path) -> Iterator[sa.Engine]:
    engine = sqlite_engine(demo_file)
    yield engine
    engine.dispose()


def sold(tables: dict[str, list[dict]]) -> list[dict]:
    return [o for o in tables["orders"] if o["status"] != "cancelled"]


def refund_rates(tables: dict[str, list[dict]]) -> dict[str, float]:
    orders = Counter(o["order_date"] for o in sold(tables))
    refunds = Counter(r["refund_date"] for r in tables["refunds"])
    return {day: refunds[day] / n for day, n in orders.items()}


# --- the generator -------------------------------------------------------------------------


def test_same_arguments_give_identical_rows_and_another_seed_does_not():
    """Over ten days, which take a tenth of a second to generate; the whole default span is built
    twice and compared by test_two_builds_give_identical_files_and_leave_no_temp_files."""
    first = demo.demo_tables(END, days=10)
    assert len(first["orders"]) > 1000
    assert demo.demo_tables(END, days=10) == first
    assert demo.demo_tables(END, days=10, seed=1)["orders"] != first["orders"]


def test_rows_cover_exactly_the_days_ending_at_end_date(tables):
    first = END - timedelta(days=demo.DEFAULT_DAYS - 1)
    days = {o["order_date"] for o in tables["orders"]}
    assert days == {iso(first + timedelta(days=n)) for n in range(demo.DEFAULT_DAYS)}
    assert 30_000 <= len(tables["orders"]) <= 60_000


def test_today_is_partial_up_to_the_cutoff_and_has_no_refunds(tables):
    today = [o for o in tables["orders"] if o["order_date"] == iso(END)]
    yesterday = [o for o in tables["orders"] if o["order_date"] == iso(YESTERDAY)]
    cutoff = f"{iso(END)} {demo.TODAY_CUTOFF_HOUR:02d}:00:00"
    assert today and all(o["created_at"] < cutoff for o in today)
    assert max(o["created_at"] for o in yesterday) > f"{iso(YESTERDAY)} 20:00:00"
    assert len(today) < len(yesterday) / 3
    assert max(r["refund_date"] for r in tables["refunds"]) == iso(YESTERDAY)


def test_every_refund_follows_its_order_and_amounts_add_up(tables):
    orders = {o["order_id"]: o for o in tables["orders"]}
    items: dict[int, Decimal] = Counter()
    for line in tables["order_items"]:
        assert line["amount"] == line["unit_price"] * line["quantity"]
        items[line["order_id"]] += line["amount"]
    assert all(items[i] == o["amount"] for i, o in orders.items())
    for r in tables["refunds"]:
        order = orders[r["order_id"]]
        assert order["order_date"] <= r["refund_date"] and order["status"] != "cancelled"
        assert 0 < r["amount"] <= order["amount"]


def test_weekends_sell_more_than_weekdays(tables):
    per_day = Counter(o["order_date"] for o in tables["orders"] if o["order_date"] < iso(END))
    weekend = [n for d, n in per_day.items() if date.fromisoformat(d).weekday() >= 5]
    weekday = [n for d, n in per_day.items() if date.fromisoformat(d).weekday() < 5]
    assert sum(weekend) / len(weekend) > 1.2 * sum(weekday) / len(weekday)


def test_a_few_products_sell_far_more_than_the_rest(tables):
    counts = sorted(Counter(i["product_id"] for i in tables["order_items"]).values(), reverse=True)
    assert counts[0] > 10 * counts[-1]
    assert sum(counts[:5]) > sum(counts) / 2


def test_normal_days_refund_two_to_four_percent_and_spike_days_exceed_the_alert(tables):
    rates = refund_rates(tables)
    spikes = {iso(END - timedelta(days=n)) for n in demo.SPIKE_OFFSETS}
    normal = [r for d, r in rates.items() if d not in spikes and d < iso(YESTERDAY)]
    assert 0.019 <= min(normal) and max(normal) <= 0.04  # 2-3.6 %, give or take one refund
    assert all(rates[d] > 0.08 for d in spikes)


# --- the SQLite file -----------------------------------------------------------------------


def test_demo_file_holds_every_generated_row(engine, tables):
    with engine.connect() as conn:
        for name, rows in tables.items():
            assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar() == len(rows)
        total = conn.execute(sa.text("SELECT ROUND(SUM(amount), 2) FROM orders")).scalar()
        assert total == float(sum(o["amount"] for o in tables["orders"]))


def test_east_china_is_the_largest_region(engine):
    sql = (
        "SELECT r.name FROM orders o JOIN regions r ON r.region_id = o.region_id "
        "GROUP BY r.region_id, r.name ORDER BY COUNT(*) DESC"
    )
    with engine.connect() as conn:
        names = conn.execute(sa.text(sql)).scalars().all()
    assert names[0] == "华东" and len(names) == len(demo.REGIONS)


def test_ensure_demo_sqlite_never_overwrites_an_existing_file(tmp_path):
    path = tmp_path / demo.DEMO_FILENAME
    path.write_bytes(b"somebody else's file")
    assert demo.ensure_demo_sqlite(path, END) is False
    assert path.read_bytes() == b"somebody else's file"
    assert os.listdir(tmp_path) == [demo.DEMO_FILENAME]


def test_two_builds_give_identical_files_and_leave_no_temp_files(tmp_path, engine):
    path = tmp_path / "sub" / demo.DEMO_FILENAME
    assert demo.ensure_demo_sqlite(path, END) is True
    assert os.listdir(path.parent) == [demo.DEMO_FILENAME]
    other = sqlite_engine(path)
    try:
        for day in (YESTERDAY, END - timedelta(days=30), END - timedelta(days=50)):
            for query, params in (
                ("daily_sales", daily_params(day)),
                ("refunds_alert", {"day": iso(day), "threshold": 0.0}),
                ("weekly_top", {"start": iso(day - timedelta(days=6)), "end": iso(day)}),
            ):
                assert run(other, query, **params) == run(engine, query, **params)
        with other.connect() as a, engine.connect() as b:
            dump = "SELECT * FROM refunds ORDER BY refund_id"
            assert a.execute(sa.text(dump)).all() == b.execute(sa.text(dump)).all()
    finally:
        other.dispose()


BUILD_SCRIPT = """
import datetime, pathlib, sys
import dispatcher.demo.shop as d
print(d.ensure_demo_sqlite(pathlib.Path(sys.argv[1]), datetime.date.fromisoformat(sys.argv[2])))
"""


def build_process(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", BUILD_SCRIPT, str(path), iso(END)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)


def build_in_progress(folder: Path) -> bool:
    try:
        return any(p.suffix == ".tmp" and p.stat().st_size for p in folder.iterdir())
    except FileNotFoundError:  # the temp file went away between listing and stat
        return False


def test_racing_processes_both_end_with_one_valid_file(tmp_path):
    path = tmp_path / demo.DEMO_FILENAME
    procs = [build_process(path) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outputs) == ["False", "True"]
    assert os.listdir(tmp_path) == [demo.DEMO_FILENAME]
    engine = sqlite_engine(path)
    try:
        _, rows = run(engine, "daily_sales", **daily_params(YESTERDAY))
        assert rows[0][1] > 100
    finally:
        engine.dispose()


def test_a_build_killed_midway_leaves_no_demo_file(tmp_path):
    path = tmp_path / demo.DEMO_FILENAME
    proc = build_process(path)
    deadline = time.monotonic() + 30
    while not build_in_progress(tmp_path):
        assert proc.poll() is None and time.monotonic() < deadline, "no build in progress seen"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not path.exists()
    assert demo.ensure_demo_sqlite(path, END) is True  # a leftover temp file does not block it


# --- load_demo -----------------------------------------------------------------------------


def test_load_demo_refuses_existing_tables_unless_replace(tmp_path, tables, demo_file):
    """On a copy of the session's demo file, which load_demo filled from empty (one load fewer)."""
    shutil.copy(demo_file, tmp_path / "shop.db")
    engine = sqlite_engine(tmp_path / "shop.db")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM refunds"))  # so that the replace visibly reloads
        with pytest.raises(DispatcherError) as refused:
            demo.load_demo(engine, END)
        assert "--replace" in str(refused.value.hint)
        counts = demo.load_demo(engine, END, replace=True)
        assert counts == {name: len(rows) for name, rows in tables.items()}
        with engine.connect() as conn:
            orders = conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar()
            refunds = conn.execute(sa.text("SELECT COUNT(*) FROM refunds")).scalar()
        assert (orders, refunds) == (counts["orders"], counts["refunds"])
    finally:
        engine.dispose()


def test_load_demo_turns_a_database_failure_into_a_dispatcher_error(tmp_path):
    engine = sqlite_engine(tmp_path / "missing-folder" / "shop.db")
    try:
        with pytest.raises(DispatcherError, match="could not load the demo data"):
            demo.load_demo(engine, END)
    finally:
        engine.dispose()


# --- the shipped queries -------------------------------------------------------------------


def test_queries_take_only_the_documented_parameters():
    expected = {
        "daily_sales": {"day", "prev_day", "prev_week"},
        "weekly_top": {"start", "end"},
        "refunds_alert": {"day", "threshold"},
    }
    for query, params in expected.items():
        sql = (ROOT / "queries" / f"{query}.sql").read_text()
        assert set(sa.text(sql).compile().params) == params, query


def test_daily_sales_returns_one_row_matching_a_python_sum(engine, tables):
    columns, rows = run(engine, "daily_sales", **daily_params(YESTERDAY))
    assert columns == [
        "sales", "orders", "customers", "avg_order",
        "sales_prev_day", "orders_prev_day", "sales_prev_week", "orders_prev_week",
    ]  # fmt: skip
    assert len(rows) == 1
    row = dict(zip(columns, rows[0], strict=True))
    for day, sales, orders in (
        (YESTERDAY, "sales", "orders"),
        (YESTERDAY - timedelta(days=1), "sales_prev_day", "orders_prev_day"),
        (YESTERDAY - timedelta(days=7), "sales_prev_week", "orders_prev_week"),
    ):
        day_orders = [o for o in sold(tables) if o["order_date"] == iso(day)]
        assert row[sales] == float(sum(o["amount"] for o in day_orders))
        assert row[orders] == len(day_orders)
    mine = [o for o in sold(tables) if o["order_date"] == iso(YESTERDAY)]
    assert row["customers"] == len({o["customer_id"] for o in mine})
    avg = (sum(o["amount"] for o in mine) / len(mine)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert row["avg_order"] == float(avg)


def test_daily_sales_rounds_a_half_cent_average_up_like_exact_decimals(tmp_path):
    """134559.10 / 356 is exactly 377.975; SQLite's binary division lands just below it."""
    engine = sqlite_engine(tmp_path / "half.db")
    amounts = [Decimal("377.98")] * 355 + [Decimal("376.20")]
    rows = [
        dict(order_id=i, customer_id=i, region_id=1, order_date=iso(YESTERDAY),
             created_at=f"{iso(YESTERDAY)} 12:00:00", status="completed", amount=amount)
        for i, amount in enumerate(amounts, 1)
    ]  # fmt: skip
    try:
        demo.METADATA.tables["orders"].create(engine)
        with engine.begin() as conn:
            conn.execute(demo.METADATA.tables["orders"].insert(), rows)
        columns, result = run(engine, "daily_sales", **daily_params(YESTERDAY))
    finally:
        engine.dispose()
    row = dict(zip(columns, result[0], strict=True))
    assert (row["sales"], row["orders"], row["avg_order"]) == (134559.10, 356, 377.98)


def test_daily_sales_on_a_day_without_orders_is_one_row_of_zeros(engine):
    _, rows = run(engine, "daily_sales", **daily_params(END + timedelta(days=30)))
    assert rows == [(0, 0, 0, 0, 0, 0, 0, 0)]


def test_refunds_alert_fires_on_yesterdays_spike_with_the_bad_batch_reason(engine, tables):
    columns, rows = run(engine, "refunds_alert", day=iso(YESTERDAY), threshold=THRESHOLD)
    assert columns == ["day", "orders", "refunds", "refund_rate", "refund_amount", "top_reason"]
    [(day, orders, refunds, rate, amount, reason)] = rows
    mine = [r for r in tables["refunds"] if r["refund_date"] == iso(YESTERDAY)]
    assert (day, refunds, reason) == (iso(YESTERDAY), len(mine), demo.QUALITY_REASON)
    assert orders == sum(1 for o in sold(tables) if o["order_date"] == iso(YESTERDAY))
    assert amount == float(sum(r["amount"] for r in mine))
    assert rate == round(refunds / orders, 4) and rate > THRESHOLD


def test_refunds_alert_fires_on_the_earlier_spikes_too(engine):
    for offset in demo.SPIKE_OFFSETS[1:]:
        day = iso(END - timedelta(days=offset))
        assert len(run(engine, "refunds_alert", day=day, threshold=THRESHOLD)[1]) == 1, day


def test_refunds_alert_is_silent_on_a_normal_day(engine, tables):
    rates = refund_rates(tables)
    normal = min(d for d, r in rates.items() if 0.02 < r < 0.04 and d > iso(END - timedelta(30)))
    assert run(engine, "refunds_alert", day=normal, threshold=THRESHOLD)[1] == []
    assert len(run(engine, "refunds_alert", day=normal, threshold=0.01)[1]) == 1


def test_refunds_alert_compares_a_text_threshold_as_a_number(engine):
    assert len(run(engine, "refunds_alert", day=iso(YESTERDAY), threshold="0.05")[1]) == 1
    assert run(engine, "refunds_alert", day=iso(YESTERDAY), threshold="0.5")[1] == []


def test_weekly_top_returns_five_products_then_every_region(engine, tables):
    monday = END - timedelta(days=END.weekday() + 7)
    sunday = monday + timedelta(days=6)
    columns, rows = run(engine, "weekly_top", start=iso(monday), end=iso(sunday))
    assert columns == ["kind", "name", "sales", "orders", "share"]
    products = [r for r in rows if r[0] == "product"]
    regions = [r for r in rows if r[0] == "region"]
    assert rows == products + regions and len(products) == 5
    assert len(regions) == len(demo.REGIONS) and regions[0][1] == "华东"
    for group in (products, regions):
        assert [r[2] for r in group] == sorted((r[2] for r in group), reverse=True)
    assert sum(r[4] for r in regions) == pytest.approx(1, abs=0.001)
    assert 0 < sum(r[4] for r in products) < 1

    week = {o["order_id"] for o in sold(tables) if iso(monday) <= o["order_date"] <= iso(sunday)}
    by_product: dict[int, Decimal] = Counter()
    for line in tables["order_items"]:
        if line["order_id"] in week:
            by_product[line["product_id"]] += line["amount"]
    names = {p["product_id"]: p["name"] for p in tables["products"]}
    top = sorted(by_product, key=lambda p: (-by_product[p], p))[:5]
    assert [(r[1], r[2]) for r in products] == [(names[p], float(by_product[p])) for p in top]


# --- the same numbers on other backends (opt-in: point these at scratch databases) ---------


def test_other_backends_give_the_same_numbers_as_sqlite(demo_server_url, engine):
    other = sa.create_engine(demo_server_url)
    try:
        for offset in (1, 2, 3, 7, 13, 30, 31, 45, 67, 68, 90):
            day = END - timedelta(days=offset)
            for query, params in (
                ("daily_sales", daily_params(day)),
                ("refunds_alert", {"day": iso(day), "threshold": THRESHOLD}),
                ("weekly_top", {"start": iso(day - timedelta(days=6)), "end": iso(day)}),
            ):
                assert normalise(run(other, query, **params)) == normalise(run(engine, query, **params)), (
                    query,
                    params,
                )
    finally:
        other.dispose()


def normalise(result: tuple[list[str], list[tuple]]) -> tuple[list[str], list[tuple]]:
    """SQLite returns float where the others return Decimal: compare the decimal values."""
    columns, rows = result
    as_decimal = [tuple(Decimal(repr(v)) if isinstance(v, float) else v for v in row) for row in rows]
    return columns, as_decimal
