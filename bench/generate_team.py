"""A reports.yaml as a team writes it over a year: the shape issue 28 profiled, next to generate.py's.

    python -m bench.generate_team OUT_DIR --reports 5000

What generate.py's config lacks and real ones have:
- a few template texts shared by many reports (`template:`), and `period:` lines;
- `params` with date macros (`{{ yesterday }}`, `{{ today | add_days(-28) }}`) bound in the SQL;
- `query:` files under queries/ (a few dozen, each used by many reports), beside inline `sql:`;
- 500 recipient groups of userids *and* mobiles, 17 sources;
- varied cron lines: lists, ranges, month and day names, `*/10` within one hour, weekday ranges,
  a few reports in their own time zone; and some intervals;
- and the keys a year of edits leaves on some reports: column `labels` and `formats`, `retries`,
  `grace` and `catchup`, `query_timeout` and `max_rows`, `msgtype: text` or an action card, an
  `alert` with `repeat` and `recovery`, a `chart` (drawn from a second random stream, so the
  shapes above stay as they were).

Cron minutes stay within `minute`..`minute`+20 (and the `*/10` lines, always in the top-level
zone, in its hour `busy_hour`), so a scenario can pick a window in which nothing is due, as with
generate.py.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from bench.child import mobile, userid
from bench.daemonproc import dingtalk_from_env, make_orders_db
from bench.generate import GROUPS, USERS, Generated, dump

SOURCES = 17
QUERY_FILES = 40
ZONES = ("Asia/Tokyo", "Europe/Berlin", "America/New_York")  # the few reports of other offices
_PARAM_SQL = (
    "SELECT region, SUM(amount) AS sales, COUNT(*) AS orders, AVG(amount) AS avg_order "
    "FROM orders WHERE :day >= '2000-01-01' AND :since <= :day GROUP BY region ORDER BY sales DESC"
)
_PLAIN_SQL = (
    "SELECT region, SUM(amount) AS sales, COUNT(*) AS orders FROM orders GROUP BY region ORDER BY sales DESC"
)
TEMPLATES = (
    "### {{ title }}\n**统计日期** {{ period }}\n\n"
    "- **销售额** {{ row.sales | currency }}\n- **订单数** {{ row.orders | integer }}\n",
    "### {{ title }}\n{% for r in top(df, 3, 'sales') %}\n"
    "{{ loop.index }}. {{ r.region | md }} {{ r.sales | number }}\n{% endfor %}\n",
    "#### {{ title }}（{{ period }}）\n"
    "{% for r in rows %}\n- {{ r.region }}：{{ r.sales | currency(2) }}，{{ r.orders }} 单\n{% endfor %}\n"
    "{% if truncated %}\n（仅显示部分）\n{% endif %}\n",
    "**{{ title }}**\n\n共 {{ n_rows }} 个区域，合计 {{ df.sales.sum() | currency }}\n",
    "### {{ title }}\n- 客单价 {{ row.avg_order | currency(2) }}\n- 日期 {{ day }}（自 {{ since }}）\n",
    "{% macro kpi(name, v) %}- **{{ name }}** {{ v }}{% endmacro %}\n### {{ title }}\n"
    "{{ kpi('销售额', row.sales | currency) }}\n{{ kpi('订单', row.orders | integer) }}\n",
)
PARAMS = (
    {"day": "{{ yesterday }}", "since": "{{ yesterday | add_days(-6) }}"},
    {"day": "{{ today }}", "since": "{{ month_start }}"},
    {"day": "{{ last_week_end }}", "since": "{{ last_week_start }}"},
    {"day": "{{ last_month_end }}", "since": "{{ last_month_start }}"},
    {"day": "{{ yesterday }}", "since": "{{ today | add_days(-28) }}"},
)
PERIODS = (None, "{{ yesterday }}", "{{ last_week_start }} ~ {{ last_week_end }}", "{{ month_start }} 至今")
EVERY = ("1h", "2h", "4h", "6h", "12h", "1d", "30m")
_WEEKDAYS = ("1-5", "mon-fri", "1", "mon", "1,3,5", "mon,wed,fri", "2-6", "0,6", "sat,sun")
_MONTHS = ("*", "*", "*", "jan,apr,jul,oct", "1-6", "*/3", "mar-nov", "dec")


def build(
    folder: Path,
    reports: int,
    servers: list[str] | None = None,
    seed: int = 28,
    minute: int = 0,
    busy_hour: int = 3,
    **dingtalk: Any,
) -> Generated:
    """`servers` and `minute` as generate.build; `busy_hour` is the hour of the `*/10` lines."""
    config = make(folder, reports, servers, seed, minute, busy_hour, **dingtalk)
    path = folder / "reports.yaml"
    path.write_text(with_anchors(dump(config)), encoding="utf-8")
    return Generated(path, reports, GROUPS, len(servers or []))


def make(
    folder: Path,
    reports: int,
    servers: list[str] | None = None,
    seed: int = 28,
    minute: int = 0,
    busy_hour: int = 3,
    **dingtalk: Any,
) -> dict[str, Any]:
    """What build writes, as a dict whose templates are placeholders (see with_anchors)."""
    rng, extras = random.Random(seed), random.Random(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    sources = _sources(folder, servers)
    queries = _query_files(folder)
    entries = {}
    for i in range(1, reports + 1):
        entries[f"r{i:05d}"] = _report(rng, i, list(sources), queries, minute, busy_hour)
        entries[f"r{i:05d}"].update(_extras(extras))
        if "alert" in entries[f"r{i:05d}"]:
            entries[f"r{i:05d}"].pop("on_empty", None)  # an alert's empty result is its recovery
    return {
        "timezone": "Asia/Shanghai",
        "sources": sources,
        "dingtalk": dingtalk_from_env(**dingtalk),
        "recipients": _groups(rng),
        "reports": entries,
    }


def with_anchors(text: str) -> str:
    """Each shared template written once, as a YAML anchor, and referred to by alias after that.

    People write a shared template so (and the 2 MB file limit would not hold 5,000 copies).
    `make` puts a placeholder in each report; the first of a kind becomes the anchor.
    """
    for k, template in enumerate(TEMPLATES):
        placeholder = f"template: '{_placeholder(k)}'"
        block = "\n".join("      " + line if line else "" for line in template.rstrip("\n").split("\n"))
        first = text.find(placeholder)
        if first < 0:
            continue
        rest = text[first + len(placeholder) :].replace(placeholder, f"template: *t{k}")
        text = text[:first] + f"template: &t{k} |\n{block}" + rest
    return text


def _placeholder(k: int) -> str:
    return f"@@template {k}@@"


def _sources(folder: Path, servers: list[str] | None) -> dict[str, str]:
    sources = {f"db{i:02d}": url for i, url in enumerate((servers or [])[:3], start=1)}
    for i in range(len(sources) + 1, SOURCES + 1):
        make_orders_db(folder / f"db{i:02d}.db", rows=200, seed=i)
        sources[f"db{i:02d}"] = f"sqlite:///db{i:02d}.db"
    return sources


def _query_files(folder: Path) -> list[str]:
    """Query files, each the parameterised or the plain query with a comment of its own."""
    (folder / "queries").mkdir(exist_ok=True)
    names = []
    for n in range(1, QUERY_FILES + 1):
        name = f"team{n:02d}/sales_{n:02d}.sql" if n % 4 else f"sales_{n:02d}.sql"
        path = folder / "queries" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"-- query {n}\n{_PARAM_SQL if n % 3 else _PLAIN_SQL}\n", encoding="utf-8")
        names.append(name)
    return names


def _groups(rng: random.Random) -> dict[str, dict[str, list[str]]]:
    groups = {}
    for g in range(1, GROUPS + 1):
        people = rng.sample(range(1, USERS + 1), rng.randint(20, 300))
        cut = len(people) * rng.randint(80, 97) // 100  # most by userid, the rest by mobile
        group = {"userids": [userid(n) for n in people[:cut]]}
        if people[cut:]:
            group["mobiles"] = [mobile(n) for n in people[cut:]]
        groups[f"team{g:03d}"] = group
    return groups


def _report(
    rng: random.Random, i: int, sources: list[str], queries: list[str], minute: int, busy_hour: int
) -> dict[str, Any]:
    entry: dict[str, Any] = {"title": f"报表 {i:05d}", "schedule": _schedule(rng, minute, busy_hour)}
    if isinstance(entry["schedule"], str) and "*/10" not in entry["schedule"] and rng.random() < 0.04:
        entry["timezone"] = rng.choice(ZONES)
    entry["source"] = rng.choice(sources)
    query = rng.randrange(len(queries) + 10)
    if query < len(queries):
        entry["query"] = queries[query]
        uses_params = (query + 1) % 3 != 0
    else:
        entry["sql"] = _PARAM_SQL if rng.random() < 0.7 else _PLAIN_SQL
        uses_params = entry["sql"] == _PARAM_SQL
    if uses_params:
        entry["params"] = dict(rng.choice(PARAMS))
    period = rng.choice(PERIODS)
    if period:
        entry["period"] = period
    entry["to"] = [f"team{rng.randint(1, GROUPS):03d}" for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    if rng.random() < 0.6:
        # The parameters' own names only where the query binds them.
        choices = TEMPLATES if uses_params else TEMPLATES[:4] + TEMPLATES[5:]
        entry["template"] = _placeholder(TEMPLATES.index(rng.choice(choices)))
    if rng.random() < 0.3:
        entry["on_empty"] = rng.choice(("send", "skip", "error"))
    return entry


def _extras(rng: random.Random) -> dict[str, Any]:
    """Keys some reports carry besides the basics, each on its own share of them (few enough that
    5,000 reports stay under the 2 MiB file limit, which the 500 groups nearly fill)."""
    extra: dict[str, Any] = {}
    if rng.random() < 0.03:
        extra |= {"labels": {"region": "区域", "sales": "销售额"}, "formats": {"sales": "currency"}}
    if rng.random() < 0.03:
        extra |= {"retries": rng.choice((0, 1, 5)), "grace": "30m", "catchup": rng.choice(("all", "none"))}
    if rng.random() < 0.02:
        extra |= {"query_timeout": rng.choice(("30s", "2m", 300)), "max_rows": rng.choice((50, 500))}
    kind = rng.random()
    if kind < 0.03:
        extra["msgtype"] = "text"
    elif kind < 0.04:
        extra |= {"msgtype": "action_card", "action_url": "https://bi.example.com/d/sales"}
    elif kind < 0.06:
        extra["alert"] = {"repeat": rng.choice(("1h", "4h", "1d")), "recovery": rng.random() < 0.5}
    elif kind < 0.07:
        extra["chart"] = {"kind": rng.choice(("bar", "line")), "x": "region", "y": ["sales"]}
    return extra


def _schedule(rng: random.Random, minute: int, busy_hour: int) -> str | dict[str, str]:
    """Cron lines as people write them; every minute within `minute`..`minute`+20."""
    if rng.random() < 0.15:
        return {"every": rng.choice(EVERY)}
    m = (minute + rng.choice((0, 0, 5, 10, 15, 20))) % 60
    kind = rng.random()
    if kind < 0.05:
        return f"*/10 {busy_hour} * * {rng.choice(('*', '1-5'))}"
    hour = rng.choice(("9", "8", "10", "9,14", "9,13,18", "8-18", "8-20/2", "7", "17", "9-17/4"))
    if kind < 0.5:
        return f"{m} {hour} * * *"
    if kind < 0.8:
        return f"{m} {hour} * * {rng.choice(_WEEKDAYS)}"
    if kind < 0.95:
        return f"{m} {hour} {rng.choice(('1', '1,15', '28', '1-7'))} {rng.choice(_MONTHS)} *"
    return f"{m},{(m + 5) % 60} {hour} * {rng.choice(_MONTHS)} {rng.choice(_WEEKDAYS)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate_team", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--reports", type=int, default=5000)
    args = parser.parse_args(argv)
    print(build(args.out, args.reports).path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
