"""The sandbox's knobs: credentials, DingTalk's limits, and the faults it injects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dispatcher.errors import DispatcherError

ENDPOINTS = (
    "gettoken",
    "getbymobile",
    "user_get",
    "asyncsend_v2",
    "getsendprogress",
    "getsendresult",
    "recall",
    "media_upload",
)


DEFAULT_APP_NAME = "报表助手"


@dataclass
class SandboxOptions:
    app_key: str = "dingsandboxkey"
    app_secret: str = field(default="sandbox-secret", repr=False)
    agent_id: int = 100000001
    token_ttl: float = 7200.0
    latency: float = 0.0
    fail_rate: float = 0.0
    reset_rate: float = 0.0
    throttle_first: int = 0
    calls_per_second: int = 20
    recipients_per_minute: int = 5000
    per_user_daily: int = 500
    force_errcode: dict[str, int] = field(default_factory=dict)
    # force_errcode spares this many calls of each endpoint first: batch 1 accepted, the rest refused
    force_errcode_after: int = 0
    force_errcode_times: int = 0  # then refuses this many calls of it (0: every later call)
    failing_userids: frozenset[str] = frozenset()
    seed: int | None = None
    directory_file: str | None = None
    progress_delay: float = 0.0
    generated_users: int = 0
    # How /topapi/* errors wrap their code in errcode 88: string, number, errmsg or plain (unwrapped).
    sub_code_form: str = "string"
    monthly_quota: int = 0  # non-exempt calls answered before 90020; 0: no quota
    # The micro-app's name: DingTalk shows it on work notifications and in an OA card's head.
    app_name: str = DEFAULT_APP_NAME


_FIELDS = {f.name: f for f in dataclasses.fields(SandboxOptions)}
_FLOATS = {"token_ttl", "latency", "fail_rate", "reset_rate", "progress_delay"}
_INTS = {"agent_id", "throttle_first", "calls_per_second", "recipients_per_minute"}
_INTS |= {"per_user_daily", "generated_users", "force_errcode_after", "force_errcode_times"}
_INTS |= {"monthly_quota"}
SUB_CODE_FORMS = ("string", "number", "errmsg", "plain")


def changed(options: SandboxOptions, changes: dict[str, Any]) -> SandboxOptions:
    """A copy of `options` with `changes` applied; JSON values are coerced to the field's type."""
    unknown = sorted(set(changes) - set(_FIELDS))
    if unknown:
        raise DispatcherError(
            f"unknown sandbox {'options' if len(unknown) > 1 else 'option'}: {', '.join(unknown)}",
            hint=f"known options: {', '.join(_FIELDS)}",
        )
    coerced = {name: _coerce(name, value) for name, value in changes.items()}
    return dataclasses.replace(options, **coerced)


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in _FLOATS:
            return float(value)
        if name in _INTS:
            return int(value)
        if name == "failing_userids":
            return frozenset(str(u) for u in value)
        if name == "force_errcode":
            return _force_errcode(dict(value))
        if name == "app_name":
            return str(value)
        if name == "seed":
            return None if value is None else int(value)
        if name == "sub_code_form" and value not in SUB_CODE_FORMS:
            raise ValueError(value)
    except (TypeError, ValueError) as exc:
        hint = f"one of {', '.join(SUB_CODE_FORMS)}" if name == "sub_code_form" else None
        raise DispatcherError(f"sandbox option {name}: invalid value {value!r}", hint=hint) from exc
    return value


def _force_errcode(mapping: dict[Any, Any]) -> dict[str, int]:
    unknown = sorted(set(mapping) - set(ENDPOINTS))
    if unknown:
        raise DispatcherError(
            f"force_errcode: unknown endpoint(s): {', '.join(map(str, unknown))}",
            hint=f"endpoints: {', '.join(ENDPOINTS)}",
        )
    return {str(k): int(v) for k, v in mapping.items()}


ENV_PREFIX = "DISPATCHER_SANDBOX_"


def from_env(environ: dict[str, str]) -> dict[str, Any]:
    """`DISPATCHER_SANDBOX_LATENCY=0.05` and friends: fault injection without flags.

    List and mapping options take JSON (`DISPATCHER_SANDBOX_FORCE_ERRCODE={"asyncsend_v2": 60020}`).
    """
    import json

    found: dict[str, Any] = {}
    for name in _FIELDS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if name in ("failing_userids", "force_errcode"):
            try:
                found[name] = json.loads(raw)
            except ValueError:
                raise DispatcherError(f"{ENV_PREFIX}{name.upper()} must be JSON, got {raw!r}") from None
        else:
            found[name] = raw
    return found


def options_from_env(environ: dict[str, str]) -> SandboxOptions:
    """The options `dispatcher sandbox`, `send --sandbox` and `run --sandbox` all start from."""
    return changed(SandboxOptions(), from_env(environ))
