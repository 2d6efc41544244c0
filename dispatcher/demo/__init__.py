"""The demo shop: a SQLite database of sales that the starter reports query.

Entry points: `shop.ensure_demo_sqlite` and `shop.load_demo` (any SQL database); `schema` holds
its tables. `run --sandbox` in a fresh project and the tests use it, so a newcomer sees real
numbers without a database of their own.

May import: the top-level helpers only.
"""
