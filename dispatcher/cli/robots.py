"""The CLI's group-robot parts: `preview`'s group version and `send`'s robot deliveries.

Its own module so `cli` and `cli_send` gain a call each, not the robot logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.cli.common import print_message
from dispatcher.errors import DispatcherError
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.app import App
    from dispatcher.config.model import Config, Report
    from dispatcher.render import Rendered
    from dispatcher.run.prepare import Prepared


def check_robot_names(config: Config, names: list[str]) -> None:
    """`--robot NAME` must name a robot of the config."""
    for name in names:
        if name not in config.robots:
            known = ", ".join(sorted(config.robots)) or "none defined under robots:"
            raise DispatcherError(f"no robot named {name!r}", hint=f"known robots: {known}")


def group_previews(config: Config, prepared: Prepared) -> dict[str, dict[str, Any]]:
    """Each of the report's robots -> its message as it would be sent (msgUuid included)."""
    from dispatcher.run.robots import build_message

    if prepared.rendered is None:
        return {}
    out = {}
    for name in prepared.report.robots:
        message = build_message(config, prepared, name, _rerender(config, prepared))
        out[name] = {"msg": message.body, "msg_bytes": message.size, "limit": message.extras["limit"],
                     "rows_shown": message.extras["rows_shown"], "text": message.text}  # fmt: skip
    return out


def print_groups(groups: dict[str, dict[str, Any]]) -> None:
    for name, group in groups.items():
        print(f"group      {name}: {group['msg']['msgtype']}, {group['msg_bytes']} of "
              f"{plural(group['limit'], 'byte')}, {plural(group['rows_shown'], 'row')} shown")  # fmt: skip
        print_message(group["text"])


def send_to_robots(
    app: App, prepared: Prepared, names: list[str], salt: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deliver to `names` now and print a line per robot; returns the ledger entries."""
    from dispatcher.run.robots import send_robots

    if app.robots is None:
        raise DispatcherError("the config has no robots: section")
    accepted, refused = send_robots(app.robots, app.config, prepared, names,
                                    _rerender(app.config, prepared), salt=salt)  # fmt: skip
    for entry in accepted:
        print(f"robot      {entry['unit'].removeprefix('robot:')}: posted, {plural(entry['bytes'], 'byte')}")
    for entry in refused:
        print(f"refused    {entry['unit'].removeprefix('robot:')}: {entry['message']}")
    if app.sandbox is not None and accepted:
        print(f"group      {app.sandbox.url}/ shows the group messages")
    return accepted, refused


def report_robots(report: Report, chosen: list[str] | None) -> list[str]:
    return list(chosen) if chosen else list(report.robots)


def _rerender(config: Config, prepared: Prepared) -> Any:
    from dispatcher.run.prepare import rerender

    def again(budget: int) -> Rendered:
        return rerender(config, prepared, budget)

    return again
