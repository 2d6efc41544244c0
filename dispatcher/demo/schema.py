"""The demo shop's tables (see dispatcher.demo.shop for what they hold and why these types).

Dates are ISO strings and money is Numeric(12, 2), so the shipped queries give the same figures on
SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

# utf8mb4 so MySQL/MariaDB store the Chinese names whatever the server's default charset is.
_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}
METADATA = sa.MetaData()


def _id(name: str, *fk: sa.ForeignKey, primary: bool = True) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, *fk, primary_key=primary, nullable=False, autoincrement=False)


def _money(name: str) -> sa.Column[Decimal]:
    return sa.Column(name, sa.Numeric(12, 2), nullable=False)


def _text(name: str, length: int, *, index: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False, index=index)


sa.Table("regions", METADATA, _id("region_id"), _text("name", 20), **_MYSQL)
sa.Table(
    "customers", METADATA,
    _id("customer_id"),
    _text("name", 20),
    _id("region_id", sa.ForeignKey("regions.region_id"), primary=False),
    _text("city", 20),
    _text("signup_date", 10),
    **_MYSQL,
)  # fmt: skip
sa.Table(
    "products", METADATA,
    _id("product_id"), _text("name", 50), _text("category", 20), _money("unit_price"),
    **_MYSQL,
)  # fmt: skip
sa.Table(
    "orders", METADATA,
    _id("order_id"),
    _id("customer_id", sa.ForeignKey("customers.customer_id"), primary=False),
    _id("region_id", sa.ForeignKey("regions.region_id"), primary=False),
    _text("order_date", 10, index=True),
    _text("created_at", 19),
    _text("status", 12),
    _money("amount"),
    **_MYSQL,
)  # fmt: skip
sa.Table(
    "order_items", METADATA,
    _id("order_id", sa.ForeignKey("orders.order_id")),
    _id("product_id", sa.ForeignKey("products.product_id")),
    sa.Column("quantity", sa.Integer, nullable=False),
    _money("unit_price"),
    _money("amount"),
    **_MYSQL,
)  # fmt: skip
sa.Table(
    "refunds", METADATA,
    _id("refund_id"),
    _id("order_id", sa.ForeignKey("orders.order_id"), primary=False),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.product_id"), nullable=True),
    _text("refund_date", 10, index=True),
    _money("amount"),
    _text("reason", 20),
    **_MYSQL,
)  # fmt: skip
