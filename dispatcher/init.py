"""`dispatcher init [DIR]`: a minimal working project, ready for validate, preview and run --sandbox.

The files come from the package (dispatcher/project/); the JSON Schema is written beside
reports.yaml so that the modeline on its first line works offline, in any editor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dispatcher.config_schema import SCHEMA_FILE, shipped
from dispatcher.errors import DispatcherError

CONFIG = "reports.yaml"
# target in the project -> file under dispatcher/project/ (dotfiles are renamed: packaging drops them)
FILES = {
    CONFIG: "reports.yaml",
    "queries/daily_sales.sql": "queries/daily_sales.sql",
    ".env.example": "env.example",
}
GITIGNORE = ".gitignore"


@dataclass
class InitResult:
    folder: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def init_project(folder: Path, *, force: bool = False) -> InitResult:
    """Write the project into `folder`; an existing reports.yaml is refused unless `force`.

    Everything is checked before the first write, so a refusal leaves the folder untouched.
    Other existing files are kept (overwritten with `force`); .gitignore only gains missing lines.
    """
    folder = folder.expanduser()
    _check_target(folder, force)
    contents = {target: _template(name) for target, name in FILES.items()}
    contents[SCHEMA_FILE] = shipped()
    result = InitResult(folder.resolve() if folder.exists() else folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for target, text in contents.items():
            path = folder / target
            if path.exists() and not force:
                result.kept.append(target)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            result.written.append(target)
        if _merge_gitignore(folder / GITIGNORE, _template("gitignore")):
            result.written.append(GITIGNORE)
        else:
            result.kept.append(GITIGNORE)
    except OSError as exc:
        raise DispatcherError(f"cannot write the project into {folder}: {exc.strerror or exc}") from None
    result.folder = folder.resolve()
    return result


def _check_target(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise DispatcherError(
            f"{folder} exists and is not a folder", hint="pass a folder, e.g. `init reports`"
        )
    config = folder / CONFIG
    if config.exists() and not force:
        raise DispatcherError(
            f"{config} already exists; nothing was written",
            hint="pass --force to overwrite it (and the other files init writes), or init another folder",
        )
    for target in (*FILES, SCHEMA_FILE, GITIGNORE):
        path = folder / target
        if path.exists() and not path.is_file():
            raise DispatcherError(f"{path} exists and is not a file; nothing was written")


def _template(name: str) -> str:
    return resources.files("dispatcher").joinpath("project", name).read_text(encoding="utf-8")


def _merge_gitignore(path: Path, template: str) -> bool:
    """Append the lines the project needs that the file lacks; True if it changed."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    have = {line.strip() for line in existing.splitlines()}
    wanted = [line for line in template.splitlines() if line.strip() and line.strip() not in have]
    if not [line for line in wanted if not line.startswith("#")]:
        return False
    prefix = existing if not existing or existing.endswith("\n") else existing + "\n"
    path.write_text(prefix + "\n".join(wanted) + "\n", encoding="utf-8")
    return True


def next_steps(result: InitResult) -> str:
    """What `dispatcher init` prints."""
    lines = [f"created a dispatcher project in {result.folder}"]
    lines += [f"  wrote  {name}" for name in result.written]
    lines += [f"  kept   {name} (exists; --force overwrites it)" for name in result.kept if name != GITIGNORE]
    lines += [
        "next:",
        f"  cd {result.folder}",
        "  dispatcher validate",
        "  dispatcher preview daily-sales",
        "  dispatcher run --sandbox        # then open the inbox address it prints",
        "before going live: copy .env.example to .env and fill it in (.env beside reports.yaml is read",
        "  at start; the environment wins), then `dispatcher doctor`",
    ]
    return "\n".join(lines)
