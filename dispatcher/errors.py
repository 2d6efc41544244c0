"""One exception hierarchy. The CLI is the only place that turns these into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class DispatcherError(Exception):
    """Root of every error the user is meant to read. `str()` is the message; `hint` says what to do."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


@dataclass(frozen=True)
class Problem:
    """One validation finding: where it is and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(DispatcherError):
    """The config file is wrong; carries every problem found, each with file:line and key path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ScheduleError(DispatcherError, ValueError):
    """A cron expression, interval or duration that cannot be parsed."""


class ReportNotFound(DispatcherError, KeyError):
    def __init__(self, report_id: str, known: list[str]) -> None:
        hint = f"known reports: {', '.join(sorted(known))}" if known else "the config has no reports"
        super().__init__(f"no report named {report_id!r}", hint=hint)
        self.report_id = report_id

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return DispatcherError.__str__(self)


class QueryError(DispatcherError):
    """A report's query failed: bad SQL, a refused write, a timeout or an unreachable source."""

    def __init__(
        self,
        message: str,
        *,
        report: str | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        prefix = f"report {report!r}: " if report else ""
        prefix += f"source {source!r}: " if source else ""
        super().__init__(prefix + message, hint=hint)
        self.report = report
        self.source = source


class RenderError(DispatcherError):
    """A template failed to render, or the message cannot fit the size budget."""


class DeliveryError(DispatcherError):
    """DingTalk refused or could not be reached. Never carries a token or the app secret."""

    def __init__(
        self,
        message: str,
        *,
        errcode: int | None = None,
        errmsg: str | None = None,
        endpoint: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        self.retryable = retryable


class CredentialsError(DeliveryError):
    """Missing or rejected DINGTALK_APP_KEY / DINGTALK_APP_SECRET / DINGTALK_AGENT_ID."""


class SecretLeakError(DeliveryError):
    """A message, file or state-store row held a known secret: refused before it left. Its text names
    the kind of secret, never the value."""


class StateError(DispatcherError):
    """The state store (ledger, userid cache) is unreachable or inconsistent."""


class TooLargeError(DeliveryError):
    """The server, or a proxy in front of it, refused the request body as too large (HTTP 413)."""


class QuotaExhaustedError(DeliveryError):
    """DingTalk answered 90020: the organisation's monthly API quota is used up. Never retried."""


class SplitError(DispatcherError):
    """A `split_by` report cannot be split safely, e.g. more distinct values than `max_slices`."""
