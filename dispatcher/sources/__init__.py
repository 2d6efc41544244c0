"""Where report data comes from: source URLs, the read-only query runner and its guard.

Entry points: `query.run_query` (bound parameters, read-only transactions, a timeout and a row
and memory cap), `url` (parsing, checking and redacting source URLs, also for the state store), and
`guard` (what makes a connection read-only on each database).

May import: the top-level helpers only.
"""
