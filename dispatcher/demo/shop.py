"""The demo shop: deterministic sales data for the shipped reports, loadable into any backend.

A fresh clone runs its reports against a SQLite file built from `demo_tables`; `load_demo` puts
the very same rows into PostgreSQL or MariaDB, and the shipped queries give identical numbers on
all three.

Tables (ids are explicit integers; nothing relies on autoincrement):
- regions(region_id, name)                              华东 is the largest, 东北/西北 the smallest
- customers(customer_id, name, region_id, city, signup_date)   ids increase with signup_date
- products(product_id, name, category, unit_price)
- orders(order_id, customer_id, region_id, order_date, created_at, status, amount)
    status: 'cancelled' (never counts as a sale), 'refunded' (refunded in full), otherwise by age
    at end_date: 'paid' (< 2 days), 'shipped' (< 7 days), 'completed'. amount = sum of its items.
- order_items(order_id, product_id, quantity, unit_price, amount)   PK (order_id, product_id)
- refunds(refund_id, order_id, product_id, refund_date, amount, reason)
    product_id is NULL for a whole-order refund, else the one item refunded.

Portability decisions (the same figures on SQLite, PostgreSQL and MySQL):
- Dates are ISO strings: order_date/refund_date `YYYY-MM-DD` (String(10)), created_at
  `YYYY-MM-DD HH:MM:SS`. Bound ISO-date parameters then compare as plain strings everywhere, with
  no dialect-specific date functions and no driver date adapters.
- Money is Numeric(12, 2) filled with Decimal. PostgreSQL and MySQL sum exact decimals, but SQLite
  stores REAL (INTEGER when whole): its sums carry float noise, and all-integer operands would
  divide as integers. So the queries ROUND(x, 2) every money figure and scale before dividing
  (queries/daily_sales.sql says how). SQLite still hands back float where the others hand back
  Decimal: the values are equal, so format them with a fixed precision.

Time window: the `days` calendar days ending at end_date. Every day before end_date is complete;
end_date itself ("today", the day the demo is built) holds only the orders created before 08:00,
so "today" reports are visibly partial, while every shipped report reads yesterday or earlier.
Refunds are processed up to yesterday: none is dated end_date. Sales are gross: cancelled orders
never count, refunded ones do.

Patterns: ~300 orders a day growing 0.25 %/day, weekends 35 % busier, 华东 31 % of orders, sales
concentrated on BEST_SELLERS. Refunds are 2-3.6 % of a day's orders (drawn per day, so a 5 % alert
stays quiet), taken from the past week's orders. On each spike day (SPIKE_OFFSETS days before
end_date, yesterday included) a bad batch of one best seller adds 6-8 % more '质量问题' refunds.
"""

from __future__ import annotations

import bisect
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dispatcher.demo.schema import METADATA
from dispatcher.errors import DispatcherError

DEMO_FILENAME = "demo.db"
DEFAULT_DAYS = 120
DEFAULT_SEED = 20261128
TODAY_CUTOFF_HOUR = 8
SPIKE_OFFSETS = (1, 30, 67)  # days before end_date; 1 = yesterday, so the alert fires at once
QUALITY_REASON = "质量问题"
CHUNK_ROWS = 5000

Row = dict[str, Any]

# (name, weight, cities): weights are each region's share of customers and orders, in percent.
REGIONS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("华东", 31, ("上海", "杭州", "南京", "苏州", "宁波", "合肥", "福州", "济南")),
    ("华南", 21, ("广州", "深圳", "东莞", "佛山", "南宁", "海口")),
    ("华北", 16, ("北京", "天津", "石家庄", "太原", "呼和浩特")),
    ("西南", 11, ("成都", "重庆", "昆明", "贵阳")),
    ("华中", 10, ("武汉", "长沙", "郑州", "南昌")),
    ("东北", 6, ("沈阳", "大连", "长春", "哈尔滨")),
    ("西北", 5, ("西安", "兰州", "银川", "乌鲁木齐")),
)

# category -> "name price, ..."; product ids follow this order.
CATALOG = {
    "数码配件": "无线蓝牙耳机 199.00, 快充数据线 29.90, 20000毫安充电宝 129.00, "
    "硅胶手机壳 39.90, 机械键盘 299.00, 无线鼠标 79.00",
    "家居日用": "不锈钢保温杯 89.00, 乳胶枕 159.00, 抽纸24包 49.90, 折叠收纳箱 45.00, "
    "全棉四件套 239.00, 香薰蜡烛 59.00",
    "食品饮料": "每日坚果30袋 99.00, 挂耳咖啡50包 79.90, 五常大米5kg 59.90, "
    "西湖龙井250g 168.00, 风干牛肉干 45.80, 常温酸奶12盒 52.00",
    "服饰鞋包": "纯棉T恤 69.00, 运动跑鞋 359.00, 通勤双肩包 149.00, 轻薄羽绒服 599.00, "
    "直筒牛仔裤 189.00, 棒球帽 49.00",
    "美妆个护": "氨基酸洗面奶 68.00, 保湿面霜 218.00, 清爽防晒霜 129.00, 声波电动牙刷 199.00, "
    "去屑洗发水 59.90, 丝绒口红 239.00",
    "母婴用品": "婴儿纸尿裤 139.00, 婴儿湿巾10包 39.90, 儿童保温杯 99.00, 宽口径奶瓶 89.00",
}
PRODUCTS = tuple(
    (name, category, Decimal(price))
    for category, items in CATALOG.items()
    for name, price in (item.split() for item in items.split(", "))
)
# Best sellers first; the rest follow in catalog order. Sales fall off by rank (Zipf-like).
BEST_SELLERS = ("抽纸24包", "快充数据线", "每日坚果30袋", "婴儿纸尿裤", "纯棉T恤", "无线蓝牙耳机",
                "挂耳咖啡50包", "不锈钢保温杯", "氨基酸洗面奶", "硅胶手机壳")  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚英华玉兰萍红鹏辉婷雪琳晨宇浩欣怡涵子轩思博文佳"
# Evening-heavy online shop: relative order volume per hour of the day, 00h-23h.
HOUR_WEIGHTS = (3, 2, 1, 1, 1, 1, 2, 4, 6, 8, 10, 11, 10, 9, 9, 9, 9, 9, 10, 12, 14, 15, 12, 6)
REASONS = (("七天无理由", 34), ("尺码/规格不合适", 18), (QUALITY_REASON, 16),
           ("商品与描述不符", 12), ("物流太慢", 10), ("商品破损", 10))  # fmt: skip


def demo_tables(end_date: date, days: int = DEFAULT_DAYS, seed: int = DEFAULT_SEED) -> dict[str, list[Row]]:
    """All demo rows by table name, in insert order. Same arguments, same rows, same order."""
    if days < 1:
        raise DispatcherError(f"the demo needs at least one day, got {days}")
    rng = random.Random(seed)
    start = end_date - timedelta(days=days - 1)
    customers = _customers(rng, start, days)
    orders, items = _orders(rng, start, end_date, customers)
    refunds = _refunds(rng, start, end_date, orders, items)
    _set_statuses(orders, refunds, end_date)
    return {
        "regions": [{"region_id": i, "name": r[0]} for i, r in enumerate(REGIONS, 1)],
        "customers": customers,
        "products": [
            {"product_id": i, "name": n, "category": c, "unit_price": p}
            for i, (n, c, p) in enumerate(PRODUCTS, 1)
        ],
        "orders": orders,
        "order_items": items,
        "refunds": refunds,
    }


def _customers(rng: random.Random, start: date, days: int) -> list[Row]:
    """Customers with ids in signup order; 60 % joined in the two years before the window."""
    region_cum = list(accumulate(r[1] for r in REGIONS))
    people = []
    for n in range(max(300, days * 75)):
        region = rng.choices(range(len(REGIONS)), cum_weights=region_cum)[0]
        before = n % 5 < 3
        offset = -rng.randint(1, 730) if before else rng.randrange(days)
        given = "".join(rng.choices(GIVEN, k=rng.choice((1, 2, 2))))
        people.append((offset, region, rng.choice(SURNAMES) + given, rng.choice(REGIONS[region][2])))
    people.sort(key=lambda p: p[0])  # stable: equal signup days keep generation order
    return [
        dict(customer_id=i, name=name, region_id=region + 1, city=city,
             signup_date=(start + timedelta(days=offset)).isoformat())
        for i, (offset, region, name, city) in enumerate(people, 1)
    ]  # fmt: skip


def _orders(
    rng: random.Random, start: date, end_date: date, customers: list[Row]
) -> tuple[list[Row], list[Row]]:
    region_cum = list(accumulate(r[1] for r in REGIONS))
    hour_cum = list(accumulate(HOUR_WEIGHTS))
    popularity = _popularity()
    prices = [p[2] for p in PRODUCTS]
    by_region: list[list[Row]] = [[] for _ in REGIONS]
    for c in customers:
        by_region[c["region_id"] - 1].append(c)
    signups = [[c["signup_date"] for c in group] for group in by_region]
    orders: list[Row] = []
    items: list[Row] = []
    for day in _days(start, end_date):
        iso = day.isoformat()
        seconds = sorted(
            rng.choices(range(24), cum_weights=hour_cum)[0] * 3600 + rng.randrange(3600)
            for _ in range(_day_volume(rng, day, start))
        )
        if day == end_date:
            seconds = [s for s in seconds if s < TODAY_CUTOFF_HOUR * 3600]
        for sec in seconds:
            region = rng.choices(range(len(REGIONS)), cum_weights=region_cum)[0]
            known = max(1, bisect.bisect_right(signups[region], iso))
            # Skewed towards early signups: loyal customers order again and again.
            customer = by_region[region][int(known * rng.random() ** 1.6)]
            order_id = len(orders) + 1
            lines = _order_lines(rng, order_id, popularity, prices)
            items.extend(lines)
            created = f"{iso} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
            status = "cancelled" if rng.random() < 0.02 else ""  # the rest is set at the end
            amount = sum((line["amount"] for line in lines), Decimal("0.00"))
            orders.append(dict(order_id=order_id, customer_id=customer["customer_id"],
                               region_id=region + 1, order_date=iso, created_at=created,
                               status=status, amount=amount))  # fmt: skip
    return orders, items


def _popularity() -> list[float]:
    """Cumulative weights over PRODUCTS: a few best sellers, a long tail."""
    names = [p[0] for p in PRODUCTS]
    ranked = [*BEST_SELLERS, *(n for n in names if n not in BEST_SELLERS)]
    return list(accumulate(1 / (ranked.index(n) + 1) ** 1.1 for n in names))


def _day_volume(rng: random.Random, day: date, start: date) -> int:
    """A few hundred orders: slow growth, busier weekends, some day-to-day noise."""
    base = 300 * (1 + 0.0025 * (day - start).days)
    if day.weekday() >= 5:
        base *= 1.35
    return round(base * rng.uniform(0.9, 1.1))


def _order_lines(
    rng: random.Random, order_id: int, popularity: list[float], prices: list[Decimal]
) -> list[Row]:
    count = rng.choices((1, 2, 3, 4), cum_weights=(55, 83, 95, 100))[0]
    picked = dict.fromkeys(rng.choices(range(len(PRODUCTS)), cum_weights=popularity, k=count))
    lines = []
    for p in picked:
        qty = rng.choices((1, 2, 3, 4), cum_weights=(72, 91, 98, 100))[0]
        lines.append(dict(order_id=order_id, product_id=p + 1, quantity=qty,
                          unit_price=prices[p], amount=prices[p] * qty))  # fmt: skip
    return lines


def _refunds(
    rng: random.Random, start: date, end_date: date, orders: list[Row], items: list[Row]
) -> list[Row]:
    lines: dict[int, list[Row]] = {}
    for line in items:
        lines.setdefault(line["order_id"], []).append(line)
    sold: dict[str, list[Row]] = {}
    for o in orders:
        if o["status"] != "cancelled":
            sold.setdefault(o["order_date"], []).append(o)
    spikes = {end_date - timedelta(days=n): i for i, n in enumerate(SPIKE_OFFSETS)}
    reason_cum = list(accumulate(w for _, w in REASONS))
    refunded: set[int] = set()
    refunds: list[Row] = []

    def add(order: Row, day: date, reason: str, line: Row | None) -> None:
        refunded.add(order["order_id"])
        part = line or {"product_id": None, "amount": order["amount"]}
        refunds.append(dict(refund_id=len(refunds) + 1, order_id=order["order_id"],
                            product_id=part["product_id"], refund_date=day.isoformat(),
                            amount=part["amount"], reason=reason))  # fmt: skip

    for day in _days(start, end_date - timedelta(days=1)):
        day_orders = len(sold.get(day.isoformat(), []))
        week = [o for o in _sold_between(sold, day - timedelta(days=6), day) if o["order_id"] not in refunded]
        wanted = round(rng.uniform(0.02, 0.036) * day_orders)
        for o in rng.sample(week, min(wanted, len(week))):
            reason = REASONS[rng.choices(range(len(REASONS)), cum_weights=reason_cum)[0]][0]
            whole = rng.random() < 0.7 or len(lines[o["order_id"]]) == 1
            add(o, day, reason, None if whole else rng.choice(lines[o["order_id"]]))
        if day in spikes:
            recent = _sold_between(sold, day - timedelta(days=4), day)
            hit = _bad_batch(recent, lines, spikes[day], refunded)
            for o, line in rng.sample(hit, min(round(rng.uniform(0.06, 0.08) * day_orders), len(hit))):
                add(o, day, QUALITY_REASON, line)
    return refunds


def _sold_between(sold: dict[str, list[Row]], first: date, last: date) -> list[Row]:
    return [o for d in _days(first, last) for o in sold.get(d.isoformat(), [])]


def _bad_batch(
    recent: list[Row], lines: dict[int, list[Row]], spike: int, refunded: set[int]
) -> list[tuple[Row, Row]]:
    """Not yet refunded (order, line) pairs of the bad product: the spike-th best seller of the
    last days, so each spike hits a different product and always has enough orders to refund."""
    counts = Counter(line["product_id"] for o in recent for line in lines[o["order_id"]])
    ranked = sorted(counts, key=lambda p: (-counts[p], p))
    bad = ranked[min(spike, len(ranked) - 1)]
    return [
        (o, line)
        for o in recent
        if o["order_id"] not in refunded
        for line in lines[o["order_id"]]
        if line["product_id"] == bad
    ]


def _set_statuses(orders: list[Row], refunds: list[Row], end_date: date) -> None:
    whole = {r["order_id"] for r in refunds if r["product_id"] is None}
    for o in orders:
        if o["status"] == "cancelled":
            continue
        age = (end_date - date.fromisoformat(o["order_date"])).days
        if o["order_id"] in whole:
            o["status"] = "refunded"
        else:
            o["status"] = "completed" if age >= 7 else "shipped" if age >= 2 else "paid"


def _days(first: date, last: date) -> Iterator[date]:
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


def load_demo(engine: sa.Engine, end_date: date, *, replace: bool = False) -> dict[str, int]:
    """Create the demo tables and fill them; returns the row count per table.

    Refuses to touch existing demo tables unless `replace`, which drops and recreates them.
    """
    try:
        inspector = sa.inspect(engine)
        existing = [t.name for t in METADATA.sorted_tables if inspector.has_table(t.name)]
        if existing and not replace:
            raise DispatcherError(
                f"the demo tables already exist: {', '.join(existing)}",
                hint="pass --replace to drop and recreate them (their current rows are lost)",
            )
        tables = demo_tables(end_date)
        METADATA.drop_all(engine)
        METADATA.create_all(engine)
        counts = {name: _insert(engine, METADATA.tables[name], rows) for name, rows in tables.items()}
        _analyze(engine)
        return counts
    except sa.exc.SQLAlchemyError as exc:
        # The driver's own message: SQLAlchemy's would append every bound row of the chunk.
        raise DispatcherError(f"could not load the demo data: {getattr(exc, 'orig', None) or exc}") from exc


def _insert(engine: sa.Engine, table: sa.Table, rows: Sequence[Row]) -> int:
    with engine.begin() as conn:
        for at in range(0, len(rows), CHUNK_ROWS):
            conn.execute(table.insert(), list(rows[at : at + CHUNK_ROWS]))
    return len(rows)


def _analyze(engine: sa.Engine) -> None:
    """Fresh planner statistics: without them MariaDB runs weekly_top as a scan of every item."""
    names = [t.name for t in METADATA.sorted_tables]
    with engine.begin() as conn:
        if conn.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql(f"ANALYZE TABLE {', '.join(names)}").all()
        elif conn.dialect.name in ("postgresql", "sqlite"):
            for name in names:
                conn.exec_driver_sql(f"ANALYZE {name}")


def ensure_demo_sqlite(path: Path, end_date: date) -> bool:
    """Build the SQLite demo at `path` unless a file is already there. True if this call built it.

    The file is built under a temporary name in the same folder and then published in one atomic
    step, so a crash never leaves a half-built demo and racing processes all end with a valid one.
    """
    if path.exists():
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DispatcherError(f"cannot create the demo database in {path.parent}: {exc.strerror}") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        engine = sa.create_engine(sa.URL.create("sqlite", database=str(tmp)))
        try:
            load_demo(engine, end_date)
        finally:
            engine.dispose()
        return _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + "-journal").unlink(missing_ok=True)


def _publish(tmp: Path, path: Path) -> bool:
    try:
        # A hard link never replaces an existing file, so a racing process's demo stays untouched.
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:
        if path.exists():  # filesystem without hard links: settle for an atomic rename
            return False
        os.replace(tmp, path)
    return True
