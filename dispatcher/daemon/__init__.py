"""The long-running scheduler: `dispatcher run`.

Entry point: `loop.Daemon`. Its pure `decide.decide(state, now)` says which fire times are due;
`runs` executes them on a bounded pool under the `watchdog`'s run_timeout, `catchup` decides what
a late or restarted daemon still owes, `chores` reloads the config and keeps the ledger tidy,
`status` reports next fire times and heartbeats, and `health` serves /healthz and /metrics over
`bounded_http`, which idle clients cannot exhaust.

May import: ops is its peer and is not imported; app, run and everything below.
"""
