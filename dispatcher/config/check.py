"""Loading reports.yaml: interpolation, then validation section by section with file:line for every
problem, and the checks that span keys (a report's source, its recipient groups, its query file).

The models are `config`'s; this module builds them and never the other way round.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dispatcher.config import yamlfile
from dispatcher.config.model import (
    Config,
    DingTalkConfig,
    RecipientGroup,
    Report,
    RobotConfig,
    _Model,
    link_url,
    sample_macros,
)
from dispatcher.config.reuse import VALIDATED, Key, report_key, shared_fingerprint
from dispatcher.config.rich import rich_problems
from dispatcher.config.words import merge_unions, plain_message, unknown_key
from dispatcher.errors import ConfigError, Problem, ScheduleError
from dispatcher.schedule import to_zone
from dispatcher.sources.url import state_url_problem, superuser_warning, url_problem


def load_config(
    path: str | os.PathLike[str], env: dict[str, str] | None = None, reuse: bool = False
) -> Config:
    """Load and validate; raise ConfigError listing every problem at once."""
    config, problems = check_config(Path(path), env, reuse=reuse)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check_config(
    path: Path, env: dict[str, str] | None = None, warnings: list[Problem] | None = None, reuse: bool = False
) -> tuple[Config | None, list[Problem]]:
    """Every problem of the file; findings that do not stop it (a superuser login) go to `warnings`.

    `reuse`: for the daemon, which loads the file again on every change: the reports its last
    load validated cleanly are reused where nothing they depend on changed (config.reuse). A
    one-off command does not keep them: holding them only slowed its exit.
    """
    with yamlfile.paused_gc():
        config, problems = _check_config(path, env, warnings, reuse)
    # Found section by section; read top to bottom, as the file is.
    return config, sorted(problems, key=lambda p: (p.file, p.line or 0))


def _check_config(
    path: Path, env: dict[str, str] | None, warnings: list[Problem] | None, reuse: bool
) -> tuple[Config | None, list[Problem]]:
    from dispatcher.config.secrets import masked, misplaced

    doc = yamlfile.load(path)
    if doc.problems and doc.data is None:
        return None, doc.problems
    if not isinstance(doc.data, dict):
        doc.problems.append(doc.problem((), "the file must be a mapping with reports: at the top"))
        return None, doc.problems
    interp = yamlfile.interpolate(doc.data, env)
    data, missing = interp.value, interp.missing
    for keypath, names in missing.items():
        if keypath[:1] not in (("dingtalk",), ("robots",)):  # needed only to deliver
            doc.problems.append(doc.problem(keypath, _unset_message(names)))
    for keypath, messages in interp.errors.items():
        doc.problems.extend(doc.problem(keypath, message) for message in messages)
    doc.problems += [doc.problem(keypath, message) for keypath, message in misplaced(data, interp.used)]
    checker = _Checker(doc, path, data, missing, os.environ if env is None else env, reuse)
    config, problems = checker.run()
    if warnings is not None:
        warnings.extend(masked(data, checker.warnings))
    return config, masked(data, problems)  # a message that quotes a value never quotes a credential


def _unset_message(names: list[str]) -> str:
    return f"environment variable {', '.join(names)} is not set (set it, or write ${{VAR:-default}})"


Model = TypeVar("Model", bound=BaseModel)


_SECTIONS = ("reports", "recipients", "dingtalk", "robots")


class _Checker:
    """Validates section by section so one bad report does not hide the problems of the others."""

    def __init__(
        self,
        doc: yamlfile.Document,
        path: Path,
        data: dict[str, Any],
        missing: dict[tuple[str, ...], list[str]],
        env: Mapping[str, str],
        reuse: bool = False,
    ) -> None:
        self.env = env  # the environment the file was read in: some checks depend on it
        self.doc = doc
        self.path = path
        self.data = data
        self.missing = missing
        self.warnings: list[Problem] = []
        # Per load, keyed by the text: thousands of reports share a few query files and `params:`
        # values, whose checks depend only on the text (the sample macros are fixed) (issue 28).
        self._seen_queries: dict[str, str | None] = {}
        self._seen_values: dict[str, str | None] = {}
        # Reports reused from the previous load (config.reuse); those validated now without a
        # problem, kept when their cross-checks add none either; this load's clean ones.
        self._shared, self._reused = shared_fingerprint(data) if reuse else None, set[str]()
        self._pending: dict[str, tuple[Key, Report]] = {}
        self._clean: dict[Key, Report] = {}

    def run(self) -> tuple[Config | None, list[Problem]]:
        top = {k: v for k, v in self.data.items() if k not in _SECTIONS}
        top["path"] = self.path
        top["dingtalk"] = self._dingtalk()
        top["robots"] = self._robots()
        top["recipients"] = self._each("recipients", RecipientGroup)
        top["reports"] = self._each("reports", Report)
        config = self._validate(Config, top, ())
        self._cross_check(config)
        if self._shared is not None:
            VALIDATED.replace(self._clean)
        problems = self.doc.problems
        return (config if not problems else None), problems

    def _dingtalk(self) -> DingTalkConfig | None:
        raw = self.data.get("dingtalk") or {}
        if not isinstance(raw, dict):
            return self._validate(DingTalkConfig, raw, ("dingtalk",))
        names = sorted({n for kp, ns in self.missing.items() if kp[:1] == ("dingtalk",) for n in ns})
        return self._validate(DingTalkConfig, {**raw, "missing_vars": tuple(names)}, ("dingtalk",))

    def _robots(self) -> dict[str, Any]:
        from dispatcher.robot.checks import robot_entries

        return robot_entries(self, self._each("robots", RobotConfig))

    def _each(self, section: str, model: type[_Model]) -> dict[str, Any]:
        raw = self.data.get(section) or {}
        if not isinstance(raw, dict):
            self.doc.problems.append(self.doc.problem((section,), "must be a mapping of name -> entry"))
            return {}
        out: dict[str, _Model | None] = {}
        for name, entry in raw.items():
            if model is Report and isinstance(entry, dict):
                out[name] = self._report(str(name), entry)
                continue
            out[name] = self._validate(model, entry, (section, name))
        return {k: v for k, v in out.items() if v is not None}

    def _report(self, name: str, entry: dict[str, Any]) -> Report | None:
        """The previous load's model when nothing it depends on changed; else validated now."""
        if self._shared is None:
            return self._validate(Report, {**entry, "id": name}, ("reports", name))
        key = report_key(name, entry, self._shared)
        if (reused := VALIDATED.get(key)) is not None:
            self._reused.add(name)
            self._clean[key] = reused
            return reused
        before = len(self.doc.problems)
        report = self._validate(Report, {**entry, "id": name}, ("reports", name))
        if report is not None and len(self.doc.problems) == before:
            self._pending[name] = (key, report)
        return report

    def _validate(self, model: type[Model], raw: Any, keypath: tuple[str, ...]) -> Model | None:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for err in merge_unions(exc.errors()):
                self._add_pydantic(model, keypath, err)
            return None

    def _add_pydantic(self, model: type[Any], keypath: tuple[str, ...], err: Any) -> None:
        loc = tuple(str(p) for p in err["loc"])
        if loc and loc[0] in _SECTIONS and keypath == ():
            return  # those sections were validated (and reported) on their own
        full = (*keypath, *loc)
        if full in self.missing:
            return  # already reported as an unset variable
        kind = err["type"]
        if kind == "extra_forbidden":
            message = unknown_key(model, loc)
        elif kind == "missing":
            message = f"required key {loc[-1]!r} is missing"
            full = full[:-1]
            self.doc.problems.append(self.doc.problem(full, message))
            return
        else:
            message = plain_message(err)
        self.doc.problems.append(self.doc.problem(full, message))

    def _cross_check(self, config: Config | None) -> None:
        self._check_zone()
        for name, url in self._section("sources").items():
            self._check_source(name, url)
        state = self.data.get("state")
        if (
            isinstance(state, str)
            and ("state",) not in self.missing
            and (problem := state_url_problem(state))
        ):
            self._problem(("state",), problem)
        for name, group in self._section("recipients").items():
            if isinstance(group, dict) and not any(group.get(k) for k in ("userids", "mobiles", "dept_ids")):
                self._problem(("recipients", name), "group has no userids, mobiles or dept_ids")
        for report_id, entry in self._section("reports").items():
            if not isinstance(entry, dict):
                continue
            if report_id in self._reused:  # all but its query files, which live on disk
                self._check_query_files(("reports", report_id), entry)
                continue
            before = len(self.doc.problems), len(self.warnings)
            self._check_report(report_id, entry)
            if report_id in self._pending and before == (len(self.doc.problems), len(self.warnings)):
                self._clean.setdefault(*self._pending[report_id])

    def _section(self, name: str) -> dict[str, Any]:
        raw = self.data.get(name)
        return raw if isinstance(raw, dict) else {}

    def _check_zone(self) -> None:
        zone = self.data.get("timezone")
        if not isinstance(zone, str) or ("timezone",) in self.missing:
            return  # absent: the default; not text: the model says so
        try:
            to_zone(zone)
        except ScheduleError as exc:
            self._problem(("timezone",), exc.message)

    def _check_source(self, name: str, url: Any) -> None:
        """A URL SQLAlchemy cannot use fails here, not at the first run; judged offline, without a driver."""
        keypath = ("sources", name)
        if not isinstance(url, str) or keypath in self.missing:
            return
        problem = url_problem(url)
        if problem:
            self._problem(keypath, problem)
        elif warning := superuser_warning(url):
            self.warnings.append(self.doc.problem(keypath, warning))

    def _check_report(self, report_id: str, entry: dict[str, Any]) -> None:
        """Cross-references, checked on the raw entry so they show even when it has other faults."""
        kp = ("reports", report_id)
        sources, groups = self._section("sources"), self._section("recipients")
        source = entry.get("source")
        if isinstance(source, str) and source not in sources:
            self._problem((*kp, "source"), _unknown_name("source", source, sources))
        to = entry.get("to")
        if not to and not entry.get("robots") and not entry.get("split_by"):
            where = (*kp, "to") if "to" in entry else kp
            self._problem(where, "give 'to' (recipient groups), 'robots' (group robots), or both")
        for i, group in enumerate(to if isinstance(to, list) else []):
            if isinstance(group, str) and group not in groups:
                self._problem((*kp, "to", str(i)), _unknown_name("recipient group", group, groups))
        query, sql = entry.get("query"), entry.get("sql")
        if (query is None) == (sql is None):
            self._problem(kp, "give exactly one of 'query' (a file under queries/) or 'sql' (inline)")
        elif isinstance(query, str):
            self._query_at((*kp, "query"), query)
        self._check_split_and_alert(kp, entry)
        if entry.get("msgtype") == "action_card" and not entry.get("action_url"):
            self._problem((*kp, "action_url"), "msgtype action_card needs an action_url")
        self._check_rich(kp, entry)
        self._check_templates(kp, entry)
        from dispatcher.robot.checks import check_report_robots

        check_report_robots(self, kp, entry)

    def _check_split_and_alert(self, kp: tuple[str, ...], entry: dict[str, Any]) -> None:
        if entry.get("split_by") and entry.get("alert"):
            self._problem((*kp, "alert"), "a report cannot be both an alert and split_by; make two reports")
        for key in ("chart", "attach"):
            if entry.get("split_by") and entry.get(key):
                self._problem(
                    (*kp, key), f"a split_by report cannot carry {key} yet; make a second report for it"
                )
        if entry.get("robots") and entry.get("chart"):
            # A robot message cannot reference an uploaded media_id, only a public image URL.
            self.warnings.append(
                self.doc.problem(
                    (*kp, "chart"), "group robots get the text only: the chart goes to 'to' alone"
                )
            )
        alert = entry.get("alert")
        if alert is not None and entry.get("on_empty") == "error":
            self._problem(
                (*kp, "on_empty"), "an alert's empty result is its recovery; on_empty 'error' contradicts it"
            )
        template = alert.get("recovery_template") if isinstance(alert, dict) else None
        if isinstance(template, str):
            from dispatcher.templating.recovery import recovery_problem

            problem = recovery_problem(template)
            if problem:
                self._problem((*kp, "alert", "recovery_template"), problem)

    def _check_rich(self, kp: tuple[str, ...], entry: dict[str, Any]) -> None:
        for sub, message in rich_problems(entry, sample_macros(), link_url):
            self._problem((*kp, *sub), message)
        macros = sample_macros()
        for key in ("chart", "attach"):
            block = entry.get(key)
            params = block.get("params") if isinstance(block, dict) else None
            for name, value in params.items() if isinstance(params, dict) else []:
                self._try_render((*kp, key, "params", name), value, macros)
            if isinstance(block, dict) and isinstance(block.get("query"), str):
                self._query_at((*kp, key, "query"), block["query"])

    def _check_query_files(self, kp: tuple[str, ...], entry: dict[str, Any]) -> None:
        """A reused report's query files, checked as `_check_report` does: they live on disk."""
        if isinstance(entry.get("query"), str):
            self._query_at((*kp, "query"), entry["query"])
        for key in ("chart", "attach"):
            if isinstance(block := entry.get(key), dict) and isinstance(block.get("query"), str):
                self._query_at((*kp, key, "query"), block["query"])

    def _check_templates(self, kp: tuple[str, ...], entry: dict[str, Any]) -> None:
        """Catch `{{ yesterdy }}` and template syntax errors now, not at 09:00 tomorrow."""
        from dispatcher.templating.bounded import syntax_problem

        macros = sample_macros()
        params = entry.get("params")
        for name, value in params.items() if isinstance(params, dict) else []:
            self._try_render((*kp, "params", name), value, macros)
        self._try_render((*kp, "period"), entry.get("period"), macros)
        template = entry.get("template")
        if isinstance(template, str) and (problem := syntax_problem(template)):
            self._problem((*kp, "template"), problem)

    def _try_render(self, keypath: tuple[str, ...], value: Any, macros: dict[str, str]) -> None:
        from dispatcher.config.params import render_value

        if isinstance(value, str) and value in self._seen_values:
            problem = self._seen_values[value]
        else:
            try:
                render_value(value, macros, ".".join(keypath), self.path.name)
                problem = None
            except ConfigError as exc:
                problem = exc.problems[0].message
            if isinstance(value, str):  # `macros` are always the sample macros here
                self._seen_values[value] = problem
        if problem:
            self._problem(keypath, problem)

    def _query_at(self, keypath: tuple[str, ...], name: str) -> None:
        if name not in self._seen_queries:
            self._seen_queries[name] = query_path_problem(self.path.resolve().parent / "queries", name)
        if problem := self._seen_queries[name]:
            self._problem(keypath, problem)

    def _problem(self, keypath: tuple[str, ...], message: str) -> None:
        self.doc.problems.append(self.doc.problem(keypath, message))


def query_path_problem(queries_dir: Path, name: str) -> str | None:
    """Why `name` is not an acceptable query file, or None. Files must stay inside queries/."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"[A-Za-z]:", name) or ".." in pure.parts:
        return f"{name!r} must be a path inside queries/ (no absolute paths, no '..')"
    target = (queries_dir / pure).resolve()
    if not target.is_relative_to(queries_dir.resolve()):
        return f"{name!r} resolves outside queries/"
    if not target.is_file():
        return f"query file queries/{pure} does not exist"
    return None


def _unknown_name(kind: str, name: str, known: dict[str, Any]) -> str:
    guess = difflib.get_close_matches(name, list(known), n=1)
    if guess:
        return f"unknown {kind} {name!r}; did you mean {guess[0]!r}?"
    listed = ", ".join(sorted(known)) or "none defined"
    return f"unknown {kind} {name!r} (defined: {listed})"
