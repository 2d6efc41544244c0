"""What an operator runs around the daemon: `doctor`, `init` and the quota forecast.

Entry points: `doctor.doctor` and `doctor.run_checks` (with `doctor_sources` and
`doctor_robots`), `init.init_project` (the starter project's files are the package data in
`project/`), `quota.store_forecast` and `quota.forecast_text`.

May import: app, run and everything below; never the daemon or the CLI.
"""
