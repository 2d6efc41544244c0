"""The command line: the argument parser and one module per family of commands.

Entry point: `main.main` (the `dispatcher` console script and `python -m dispatcher`). `main`
builds the parser and hands each command to its module: `send`, `backfill` (and resend),
`preview` (with `preview_parts`), `views` (list, history, status), `schedule` (cron, next fire
times), `robots`, `ops` (run, sandbox, validate, doctor, init, quota, state), `sandbox` (the
`--sandbox` options and the app they open), `arguments` (instants and days); `common` loads the
config for them and `progress` shows what a slow command is doing. The modules stay thin: they
parse, call one function below, print, and turn errors into exit codes.

May import every package below it: daemon, ops, app, run and the rest.
"""
