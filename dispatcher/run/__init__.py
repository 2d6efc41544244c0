"""One run of one report, from its fire time to its outcome in the ledger.

Entry points: `runner.execute` (the daemon's and `send`'s run), `backfill`, `resend`.
The pipeline reads top to bottom: `prepare` (params, query, render), `rich` and `parts` (charts and
attachments as messages of their own), `split` and `split_delivery` (one slice per recipient),
`delivery` (work notifications) and `robots` (group robots), `outcomes` (sent, partial, failed,
alerts, quota), `alerting` (alert reports' state) and `quota_alerts`. `services` is what runs share
(clients, pacing, metrics); `metrics` is the Prometheus registry runs report to.

May import: render, sandbox, demo and everything below; never app, the daemon or the CLI.
"""
