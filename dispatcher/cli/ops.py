"""The commands that hand over to one function elsewhere: validate, sandbox, run, quota, demo load,
init, schema, doctor.

Its own module so that `cli` stays the parser; it imports nothing of `cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dispatcher.cli.common import instant, load
from dispatcher.errors import DispatcherError
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.errors import Problem


def cmd_validate(args: argparse.Namespace) -> int:
    from dispatcher.config.check import check_config

    warnings: list[Problem] = []
    config, problems = check_config(args.config, warnings=warnings)
    for warning in warnings:
        print(f"warning    {warning}")
    if problems or config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        count = len(problems)
        print(f"{count} problem{'s' if count != 1 else ''} found in {args.config}", file=sys.stderr)
        return 1
    print(
        f"{args.config}: OK: {plural(len(config.reports), 'report')}, "
        f"{plural(len(config.sources), 'source')}, {plural(len(config.recipients), 'recipient group')}"
    )
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from dispatcher.sandbox.options import SandboxOptions, changed, from_env
    from dispatcher.sandbox.server import serve_forever

    flags = {
        "latency": args.latency,
        "token_ttl": args.token_ttl,
        "fail_rate": args.fail_rate,
        "reset_rate": args.reset_rate,
        "throttle_first": args.throttle_first,
        "directory_file": args.directory,
    }
    changes = {**from_env(dict(os.environ)), **{k: v for k, v in flags.items() if v is not None}}
    serve_forever(changed(SandboxOptions(), changes), port=args.port)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dispatcher.daemon.loop import DaemonOptions, run_daemon

    options = DaemonOptions(
        config_path=args.config,
        sandbox=args.sandbox,
        sandbox_port=args.sandbox_port,
        health_port=args.health_port,
        health_host=health_host(args, os.environ),
        log_format=args.log_format,
        log_tz=args.log_tz,
    )
    return run_daemon(options)


def health_host(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """`--health-host`, else DISPATCHER_HEALTH_HOST, else loopback: the endpoint has no authentication."""
    return args.health_host or environ.get("DISPATCHER_HEALTH_HOST", "").strip() or "127.0.0.1"


def log_tz(text: str) -> str:
    """`--log-tz`'s value: `report`, or an IANA zone name, checked here so a typo is refused."""
    if text == "report":
        return text
    from dispatcher.errors import ScheduleError
    from dispatcher.schedule.zones import to_zone

    try:
        to_zone(text)
    except ScheduleError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc.message}: {exc.hint}, or 'report' for each report's own"
        ) from None
    return text


def cmd_quota(args: argparse.Namespace) -> int:
    from dispatcher.app import open_store
    from dispatcher.ops.quota import forecast_text, store_forecast

    config = load(args)
    with open_store(config) as store:
        assert store is not None
        result = store_forecast(config, store)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if args.json else forecast_text(result))
    return 0


def cmd_demo_load(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from dispatcher.demo.shop import load_demo
    from dispatcher.sources.url import INSTALL_HINT
    from dispatcher.store.db import resolve_sqlite_url

    url, end = args.source, args.end
    if "://" not in url or end is None:
        config = load(args)
        if "://" not in url:
            if url not in config.sources:
                raise DispatcherError(
                    f"no source named {url!r}", hint="pass a SQLAlchemy URL or a name from sources:"
                )
            url = resolve_sqlite_url(config.sources[url], config.base_dir)
        end = end or instant(config, None).date()
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DispatcherError(
            f"cannot use that URL: {exc}",
            hint=INSTALL_HINT,
        ) from None
    try:
        counts = load_demo(engine, end, replace=args.replace)
    finally:
        engine.dispose()
    print(f"loaded the demo shop up to {end}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from dispatcher.ops.init import init_project, next_steps

    print(next_steps(init_project(args.folder, force=args.force)))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from dispatcher.config.schema import dumps, generate

    sys.stdout.write(dumps(generate()))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from dispatcher.ops.doctor import doctor

    return doctor(args.config, as_json=args.json, send_test=args.send_test)


def cmd_state_backup(args: argparse.Namespace) -> int:
    from dispatcher.store.backup import backup
    from dispatcher.store.db import state_url

    config = load(args)
    done = backup(state_url(config.base_dir, config.state), args.file)
    print(
        f"backed up {done.source} to {done.target}: schema version {done.schema_version}, "
        f"{plural(done.runs, 'run')}, {done.size:,} bytes"
    )
    return 0
