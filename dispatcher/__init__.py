"""dispatcher: scheduled SQL reports delivered as DingTalk work notifications.

The distribution is `dingtalk-report-dispatcher` (the name `dispatcher` on the package index is an
unrelated project); the import package and the command are `dispatcher`. The version has one
source, pyproject.toml, read back from the installed package's metadata.
"""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "dingtalk-report-dispatcher"
UNKNOWN_VERSION = "0+unknown"  # run from a source tree that was never installed


@cache
def version() -> str:
    """The installed distribution's version (what `-V`, the wheel and /metrics show)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as metadata_version

    try:
        return metadata_version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN_VERSION


def __getattr__(name: str) -> str:
    # Lazy, so that importing dispatcher (every command does) never reads package metadata.
    if name == "__version__":
        return version()
    raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")


def install_hint(extra: str) -> str:
    """How to install an extra (`postgres`, `mysql`), from the package index or from a checkout."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
