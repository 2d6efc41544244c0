"""Every environment variable dispatcher reads, the `.env` file beside reports.yaml, `NAME_FILE` secrets.

`VARIABLES` is the one list: the manual's and the README's tables of environment variables are
generated from it (tools/gen_docs.py), and tests/test_environment.py fails when the code reads a
variable the list does not name.

- `.env` beside reports.yaml is read at start into the process environment; a variable that is
  already set wins, as with `docker run --env-file` and systemd's `Environment=`.
- A secret can come from a file (Docker and Kubernetes secrets): `NAME_FILE=/run/secrets/x` gives
  `NAME` the file's content, its trailing newline stripped. That holds for every variable
  reports.yaml interpolates and for `DISPATCHER_STATE_URL`. Setting both is an error.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from dispatcher.errors import ConfigError, DispatcherError, Problem

DOTENV = ".env"
FILE_SUFFIX = "_FILE"


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    file_form: bool = False  # NAME_FILE works too


# The order is the tables'.
VARIABLES: tuple[Variable, ...] = (
    Variable("DINGTALK_APP_KEY", "The internal app's AppKey, as `reports.yaml` names it "
             "(`app_key: ${DINGTALK_APP_KEY}` in the shipped file and in `init`'s project).", True),
    Variable("DINGTALK_APP_SECRET", "The app's AppSecret (`app_secret:`); never logged.", True),
    Variable("DINGTALK_AGENT_ID", "The app's AgentID (`agent_id:`).", True),
    Variable("SHOP_DB_URL", "The demo project's source URL (`init`'s `reports.yaml`; default the "
             "generated `demo.db`).", True),
    Variable("any `${NAME}` in reports.yaml", "Every variable `reports.yaml` interpolates, such as a "
             "robot's webhook and secret or a source URL with its password.", True),
    Variable("DISPATCHER_STATE_URL", "The state store's SQLAlchemy URL; wins over the config's "
             "`state:` (default: SQLite at `.dispatcher/state.db` beside `reports.yaml`).", True),
    Variable("DISPATCHER_SANDBOX_STATE_URL", "The sandbox's state store (the runs of `run --sandbox`, "
             "`send --sandbox`, …); default: SQLite at `.dispatcher/sandbox.db` beside `reports.yaml`. "
             "Never production's: naming the same store is an error.", True),
    Variable("DINGTALK_API_BASE", "DingTalk's API address when the config has no `dingtalk.api_base` "
             "(default `https://oapi.dingtalk.com`; the sandbox's address in tests)."),
    Variable("DISPATCHER_ROBOT_ALLOWED_HOSTS", "Hosts besides DingTalk's a robot webhook may use (a "
             "company proxy): `host`, `host:port` or `http(s)://host[:port]`, separated by commas."),
    Variable("DISPATCHER_HEALTH_HOST", "The address `/healthz` and `/metrics` listen on when `run` has no "
             "`--health-host` (default 127.0.0.1; 0.0.0.0 in a container or a pod)."),
    Variable("DISPATCHER_DEBUG", "Set to anything: an unexpected internal error shows its traceback."),
    Variable("DISPATCHER_SANDBOX_<OPTION>", "A sandbox option without a flag (`DISPATCHER_SANDBOX_LATENCY"
             "=0.05`; lists and mappings as JSON), for `sandbox`, `send --sandbox` and `run --sandbox`."),
    Variable("DISPATCHER_SANDBOX_PORT", "The sandbox's default port (default 8765): where `sandbox` and "
             "`run --sandbox` listen and where `send --sandbox` and the like look for a running one."),
)  # fmt: skip


def load_dotenv(folder: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Read `folder/.env` into the environment, keeping every variable already set.

    Returns the names it set. A line it cannot parse is a ConfigError with `.env:line`.
    """
    environ = os.environ if environ is None else environ
    values = read_dotenv(folder / DOTENV)
    added = [name for name in values if name not in environ]
    for name in added:
        environ[name] = values[name]
    return added


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables of a `.env` file (none when it does not exist); values are taken literally."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DispatcherError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    from dotenv.parser import parse_stream  # only when there is a .env: every command reads this

    values: dict[str, str] = {}
    problems: list[Problem] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            problems.append(Problem(str(path), line, "", "not a NAME=value line (quote a value with spaces)"))
        elif binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    if problems:
        raise ConfigError(problems)
    return values


class SecretFileError(DispatcherError):
    """`NAME_FILE` cannot be used: NAME is set as well, or the file cannot be read."""


def lookup(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """`name`'s value, or the content of the file `NAME_FILE` names (trailing newline stripped)."""
    environ = os.environ if environ is None else environ
    value, path = environ.get(name), environ.get(name + FILE_SUFFIX)
    if path is None:
        return value
    if value is not None:
        raise SecretFileError(
            f"both {name} and {name}{FILE_SUFFIX} are set", hint=f"unset one of them: {name} or {name}_FILE"
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise SecretFileError(
            f"{name}{FILE_SUFFIX} names {path}, which cannot be read: {why}",
            hint=f"mount the secret there, or set {name} instead",
        ) from None
    return text.rstrip("\r\n")
