"""The Dockerfile, built and run with podman as an operator would, on a base made here.

No image registry is reachable from this machine, so the base is Debian bookworm from debootstrap
(.ci/container-base, cached between runs) passed as `--build-arg BASE`, and the wheels are built on
the host (`pip wheel`, cached per pyproject.toml) and installed with `--network none`: the build
proves the image needs no network. The podman flags below are this machine's (CLARIFICATIONS 17);
the Dockerfile itself stays the ordinary one.

Inside the container the sandbox listens on the container's own 127.0.0.1 (it refuses any other
address: it hands out tokens), so its inbox is read with `podman exec`; /healthz is read from
outside, through the published port, as a load balancer or an operator would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.daemon_harness import project, report, wait_until
from tests.services import missing, private_postgres

REPO = Path(__file__).resolve().parent.parent
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
IMAGE = "localhost/dispatcher-test:latest"
LABEL = "org.dispatcher.test=1"
CACHE = Path(os.environ.get("DISPATCHER_CACHE_DIR") or Path.home() / ".cache" / "dispatcher-ci")
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE")
TITLE = "容器心跳"
UID = 10001
DEADLINE = 90.0

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("container")]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        what = " ".join(args[:3])
        raise AssertionError(f"podman {what} … exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


def require_podman() -> None:
    problem = None
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        problem = "podman or debootstrap is not installed (Debian packages podman, runc, debootstrap)"
    else:
        info = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            problem = f"podman cannot run here: {info.stderr.strip()[-500:]}"
    if problem is None:
        return
    missing(problem, ".ci/run installs them")


def wheels() -> Path:
    """Every dependency's wheel and the build backend's, for an offline install; cached per requirement set.

    Keyed on the requirements the image installs, not on all of pyproject.toml: an edit to its dev
    extra or its tool settings would otherwise build every wheel again (minutes on a loaded machine).
    """
    pyproject = (REPO / "pyproject.toml").read_bytes()
    meta = tomllib.loads(pyproject.decode())
    extras = meta["project"].get("optional-dependencies", {})
    wanted = [meta["project"].get("dependencies", []), extras.get("postgres", []), extras.get("mysql", []),
              meta["build-system"]["requires"]]  # fmt: skip
    key = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:16]
    folder = CACHE / f"wheels-{key}"
    if folder.is_dir():
        return folder
    part = CACHE / f"wheels-{uuid.uuid4().hex}.part"
    build = meta["build-system"]["requires"]
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(part),
               f"{REPO}[postgres,mysql]", *build]  # fmt: skip
    for _ in range(2):  # the package index may drop one connection on a loaded machine
        done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        if done.returncode == 0:
            break
    assert done.returncode == 0, f"pip wheel failed: {done.stderr[-3000:]}"
    # The project's own wheel goes: the image builds the package from the source it copies.
    own = meta["project"]["name"].replace("-", "_").lower()
    for wheel in part.glob(f"{own}-*.whl"):
        wheel.unlink()
    try:
        part.rename(folder)
    except OSError:  # another run cached the same set first
        shutil.rmtree(part)
    return folder


def build_context(folder: Path) -> Path:
    """The files `docker build .` in a checkout would send (the .dockerignore still applies), plus wheels/."""
    folder.mkdir()
    for name in CONTEXT_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, folder / name)
    shutil.copytree(REPO / "dispatcher", folder / "dispatcher", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(wheels(), folder / "wheels", copy_function=os.link)
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_podman()
    CACHE.mkdir(parents=True, exist_ok=True)
    base = subprocess.run([str(REPO / ".ci" / "container-base")], capture_output=True, text=True, timeout=900)
    assert base.returncode == 0, base.stderr
    context = build_context(tmp_path_factory.mktemp("image") / "context")
    before = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    podman("build", *ULIMITS, "--network", "none", "--format", "docker", "--label", LABEL,
           "--build-arg", f"BASE={base.stdout.strip()}", "--build-arg", "PIP_NO_INDEX=1",
           "-t", IMAGE, str(context), timeout=1800)  # fmt: skip
    # The image this one replaced; the build stages stay, as the cache of the next build.
    if before and before != podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip():
        podman("rmi", before, check=False)
    return IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def readable_project(folder: Path) -> Path:
    """reports.yaml and src.db, readable by the image's user (tmp_path itself is private to root)."""
    config = project(folder, {"tick": report(TITLE)})
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return config


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of the containers a test started; removed (with their anonymous volumes) afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--volumes", name, check=False, timeout=120)


def inspect(name: str) -> dict[str, Any]:
    return dict(json.loads(podman("inspect", name).stdout)[0])


def inbox(name: str) -> list[dict[str, Any]]:
    """The sandbox's /_sandbox/messages, read inside the container (the sandbox binds its 127.0.0.1)."""
    code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8765/_sandbox/messages').read().decode())"
    done = podman("exec", name, "python3", "-c", code, check=False)
    return list(json.loads(done.stdout)) if done.returncode == 0 else []


def titles(messages: list[dict[str, Any]]) -> set[str]:
    return {m["msg"].get("markdown", {}).get("title", "") for m in messages}


def test_the_image_runs_the_daemon_as_a_non_root_user_with_its_state_on_a_volume(
    image: str, tmp_path: Path, containers: list[str]
) -> None:
    config = readable_project(tmp_path / "reports")
    declared = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert declared["Entrypoint"] == ["dispatcher"]
    assert declared["Cmd"][:3] == ["run", "-c", "/srv/reports/reports.yaml"]
    assert declared["Cmd"][3:5] == ["--health-host", "0.0.0.0"]
    assert declared["User"] == f"{UID}:{UID}"
    assert "/var/lib/dispatcher" in declared["Volumes"]
    assert "DISPATCHER_STATE_URL=sqlite:////var/lib/dispatcher/state.db" in declared["Env"]
    assert "DISPATCHER_SANDBOX_STATE_URL=sqlite:////var/lib/dispatcher/sandbox.db" in declared["Env"]

    port, name = free_port(), f"dispatcher-test-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    # The image's own command, with the built-in sandbox added so the run delivers somewhere.
    podman("run", "--detach", "--name", name, *ULIMITS, "-p", f"127.0.0.1:{port}:9108",
           "-v", f"{config.parent}:/srv/reports:ro", image, *declared["Cmd"], "--sandbox")  # fmt: skip

    def healthy() -> bool:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except requests.ConnectionError:
            return False
        return answer.status_code == 200 and answer.json()["status"] == "ok"

    wait_until(healthy, "/healthz 200 through the published port", timeout=DEADLINE, every=0.5)
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'dispatcher_build_info{version="' in metrics
    wait_until(lambda: TITLE in titles(inbox(name)), "a report in the sandbox's inbox", timeout=DEADLINE)

    who = podman("exec", name, "id", "-u").stdout.strip()
    assert who == str(UID)
    # a --sandbox run's ledger is the sandbox's (issue 26, item 2), on the volume like production's
    listing = podman("exec", name, "stat", "-c", "%u %n", "/var/lib/dispatcher/sandbox.db").stdout.split()
    assert listing == [str(UID), "/var/lib/dispatcher/sandbox.db"], "the ledger lives on the volume"
    mounts = {m["Destination"]: m for m in inspect(name)["Mounts"]}
    assert mounts["/var/lib/dispatcher"]["Type"] == "volume"
    assert podman("healthcheck", "run", name, check=False).returncode == 0, "the image's HEALTHCHECK passes"

    podman("stop", "--time", "60", name, timeout=120)  # SIGTERM: a warm shutdown, exit 0
    state = inspect(name)["State"]
    assert state["ExitCode"] == 0, state
    logged = [json.loads(line) for line in podman("logs", name).stderr.splitlines() if line.startswith("{")]
    events = [line["event"] for line in logged]
    assert "daemon.stopped" in events and "run.sent" in events
    assert "sandbox-secret" not in podman("logs", name).stderr


def test_the_image_keeps_its_ledger_in_postgresql_as_compose_runs_it(
    image: str, tmp_path: Path, containers: list[str]
) -> None:
    """compose.yaml's shape: the ledger in PostgreSQL (here the host's, reached through slirp4netns's
    gateway to the host's loopback, 10.0.2.2), on a read-only root filesystem with a writable /tmp,
    as deploy/kubernetes/ runs it. The run delivers to the sandbox, whose runs are kept apart from
    production's, so DISPATCHER_SANDBOX_STATE_URL (not DISPATCHER_STATE_URL) names the database."""
    config = readable_project(tmp_path / "reports")
    declared = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    with private_postgres() as url:
        inside = sa.make_url(url).set(host="10.0.2.2").render_as_string(hide_password=False)
        name = f"dispatcher-test-{uuid.uuid4().hex[:8]}"
        containers.append(name)
        network = "slirp4netns:allow_host_loopback=true"
        podman("run", "--detach", "--name", name, *ULIMITS, "--network", network, "--read-only",
               # --sandbox keeps its runs apart from production's: its own store is the PostgreSQL one
               "-e", f"DISPATCHER_SANDBOX_STATE_URL={inside}", "-v", f"{config.parent}:/srv/reports:ro",
               image, *declared["Cmd"], "--sandbox")  # fmt: skip
        engine = sa.create_engine(url)
        try:

            def sent_rows() -> int:
                try:
                    with engine.connect() as conn:
                        query = "SELECT count(*) FROM dispatcher_runs WHERE state = 'sent'"
                        return int(conn.exec_driver_sql(query).scalar_one())
                except sa.exc.ProgrammingError:  # the daemon has not created its tables yet
                    return 0

            wait_until(sent_rows, "a sent run in the PostgreSQL ledger", timeout=DEADLINE, every=0.5)
            podman("stop", "--time", "60", name, timeout=120)
        finally:
            engine.dispose()
    assert inspect(name)["State"]["ExitCode"] == 0
