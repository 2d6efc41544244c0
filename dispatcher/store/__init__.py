"""The state store: run ledger, userid cache, API call counter and alert state in one SQL database.

Imports run one way: `schema` (tables, the UTC type) <- `db` (engine, migration, guarded
connections) <- `ledger`, `userids`, `apicalls`, `alerts`. Nothing here imports `dispatcher.dingtalk`,
rendering, the runner or the daemon. This file imports nothing, so importing one module of the
package never loads the others.

May import: sources (URLs), config.environment and the top-level helpers.
"""
