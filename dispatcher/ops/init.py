"""`dispatcher init [DIR]`: a minimal working project, ready for validate, preview and run --sandbox.

The files come from the package (dispatcher/project/); the JSON Schema is written beside
reports.yaml so that the modeline on its first line works offline, in any editor.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dispatcher.config.schema import SCHEMA_FILE, shipped
from dispatcher.errors import DispatcherError

CONFIG = "reports.yaml"
# target in the project -> file under dispatcher/project/ (dotfiles are renamed: packaging drops them)
FILES = {
    CONFIG: "reports.yaml",
    "queries/daily_sales.sql": "queries/daily_sales.sql",
    ".env.example": "env.example",
}
GITIGNORE = ".gitignore"
# Create only: never through a link, never over an existing file (a replacement is renamed over it).
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class InitResult:
    folder: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def init_project(folder: Path, *, force: bool = False) -> InitResult:
    """Write the project into `folder`; an existing reports.yaml is refused unless `force`.

    Everything is checked before the first write, so a refusal leaves the folder untouched.
    Other existing files are kept (overwritten with `force`); .gitignore only gains missing lines.
    No write follows a link: a link planted in the folder could point anywhere (issue 22, item 15).
    """
    folder = folder.expanduser()
    _check_target(folder, force)
    contents = {target: _template(name) for target, name in FILES.items()}
    contents[SCHEMA_FILE] = shipped()
    result = InitResult(folder.resolve() if folder.exists() else folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        root = os.open(folder, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the folder itself is the user's choice
        try:
            for target, text in contents.items():
                written = _write(root, target, text.encode("utf-8"), replace=force)
                (result.written if written else result.kept).append(target)
            merged = _merge_gitignore(_read(root, GITIGNORE), _template("gitignore"))
            if merged is not None:
                _write(root, GITIGNORE, merged.encode("utf-8"), replace=True)
            (result.written if merged is not None else result.kept).append(GITIGNORE)
        finally:
            os.close(root)
    except OSError as exc:
        raise DispatcherError(f"cannot write the project into {folder}: {exc.strerror or exc}") from None
    result.folder = folder.resolve()
    return result


def _check_target(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise DispatcherError(
            f"{folder} exists and is not a folder", hint="pass a folder, e.g. `init reports`"
        )
    targets = (*FILES, SCHEMA_FILE, GITIGNORE)
    for path in sorted({folder / d for t in targets for d in Path(t).parents if d != Path(".")}):
        _refuse_link(folder, path)
        if path.exists() and not path.is_dir():
            raise DispatcherError(f"{path} exists and is not a folder; nothing was written")
    for target in targets:
        path = folder / target
        _refuse_link(folder, path)
        if path.exists() and not path.is_file():
            raise DispatcherError(f"{path} exists and is not a file; nothing was written")
    config = folder / CONFIG
    if config.exists() and not force:
        raise DispatcherError(
            f"{config} already exists; nothing was written",
            hint="pass --force to overwrite it (and the other files init writes), or init another folder",
        )


def _refuse_link(folder: Path, path: Path) -> None:
    if path.is_symlink():
        raise DispatcherError(
            f"{path} is a symbolic link; nothing was written",
            hint=f"init never writes through a link (it could point outside {folder}): "
            "remove the link, or init another folder",
        )


def _open_dir(root: int, target: str) -> int:
    """A descriptor of `target`'s folder under `root`, made if missing, never through a link."""
    fd = os.dup(root)
    for name in Path(target).parts[:-1]:
        try:
            os.mkdir(name, 0o777, dir_fd=fd)
        except FileExistsError:
            pass
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _write(root: int, target: str, content: bytes, *, replace: bool) -> bool:
    """Create `target` (never following a link); an existing one is replaced only if `replace`.

    Replacing writes a new file beside it and renames it over the old one: the rename replaces a
    link itself, never the file it points to. Returns whether the file was written.
    """
    folder = _open_dir(root, target)
    name = Path(target).name
    try:
        try:
            _create(folder, name, content)
            return True
        except FileExistsError:
            if not replace:
                return False
        spare = f".{name}.{secrets.token_hex(6)}.tmp"
        _create(folder, spare, content)
        try:
            os.replace(spare, name, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError:
            os.unlink(spare, dir_fd=folder)
            raise
        return True
    finally:
        os.close(folder)


def _create(folder: int, name: str, content: bytes) -> None:
    fd = os.open(name, _FILE_FLAGS, 0o666, dir_fd=folder)
    with os.fdopen(fd, "wb") as out:
        out.write(content)


def _read(root: int, name: str) -> str:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
    except FileNotFoundError:
        return ""
    with os.fdopen(fd, "rb") as source:
        return source.read().decode("utf-8")


def _template(name: str) -> str:
    return resources.files("dispatcher.ops").joinpath("project", name).read_text(encoding="utf-8")


def _merge_gitignore(existing: str, template: str) -> str | None:
    """The file with the lines the project needs that it lacks; None if it lacks none."""
    have = {line.strip() for line in existing.splitlines()}
    wanted = [line for line in template.splitlines() if line.strip() and line.strip() not in have]
    if not [line for line in wanted if not line.startswith("#")]:
        return None
    prefix = existing if not existing or existing.endswith("\n") else existing + "\n"
    return prefix + "\n".join(wanted) + "\n"


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
