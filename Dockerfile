# dispatcher's container image: `dispatcher run` as a non-root user, the state store on a volume,
# /healthz and /metrics on port 9108 for probes and a scraper.
#
#   docker build -t dispatcher .                # or: podman build --format docker -t dispatcher .
#   docker run -d -v ./reports:/srv/reports:ro -v dispatcher-state:/var/lib/dispatcher \
#     -e DINGTALK_APP_KEY -e DINGTALK_APP_SECRET -e DINGTALK_AGENT_ID -p 127.0.0.1:9108:9108 dispatcher
#
# Without a package index at build time, put every wheel in ./wheels first and build offline:
#   pip wheel --wheel-dir wheels '.[postgres,mysql]' 'setuptools>=68' wheel
#   docker build --build-arg PIP_NO_INDEX=1 -t dispatcher .
# BASE may be any Debian-like image with Python 3.11+ and its venv module (tests/test_container.py
# builds on a debootstrap'ed Debian bookworm, since no image registry is reachable there).
ARG BASE=python:3.11-slim

# .dockerignore lets in only the package, pyproject.toml, README.md, LICENSE and wheels/; wheels/
# exists from here on whether or not the build context had one.
FROM ${BASE} AS context
COPY . /src
RUN mkdir -p /src/wheels

FROM ${BASE} AS build
# Set (to 1) for an offline build from ./wheels; pip reads it from the environment.
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# The dependencies first, in a layer of their own, so that a change to the code alone reuses it.
COPY --from=context /src/wheels /src/wheels
COPY --from=context /src/pyproject.toml /src/pyproject.toml
RUN python3 -m venv /opt/dispatcher \
    && python3 -c 'import tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["postgres"] + p["optional-dependencies"]["mysql"]))' \
        > /src/requirements.txt \
    && /opt/dispatcher/bin/pip install --find-links /src/wheels -r /src/requirements.txt
COPY --from=context /src /src
RUN /opt/dispatcher/bin/pip install --no-deps --find-links /src/wheels /src \
    && /opt/dispatcher/bin/dispatcher --version

FROM ${BASE}
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it and volume ownership is predictable.
RUN groupadd --system --gid 10001 dispatcher \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/dispatcher --no-create-home \
        --shell /usr/sbin/nologin dispatcher \
    && mkdir -p /var/lib/dispatcher /srv/reports \
    && chown 10001:10001 /var/lib/dispatcher
COPY --from=build /opt/dispatcher /opt/dispatcher
# The state store (ledger, userid cache, quota counter) lives on the volume unless
# DISPATCHER_STATE_URL names PostgreSQL (compose.yaml, deploy/kubernetes/). DingTalk credentials
# come from the environment (DINGTALK_APP_KEY, DINGTALK_APP_SECRET, DINGTALK_AGENT_ID, or whatever
# variables reports.yaml names); nothing secret is baked into the image. `--sandbox` runs keep
# theirs apart, on the volume too (the mounted project is usually read-only).
ENV PATH=/opt/dispatcher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    DISPATCHER_STATE_URL=sqlite:////var/lib/dispatcher/state.db \
    DISPATCHER_SANDBOX_STATE_URL=sqlite:////var/lib/dispatcher/sandbox.db
VOLUME ["/var/lib/dispatcher"]
WORKDIR /srv/reports
USER 10001:10001
EXPOSE 9108
# /healthz answers 503 when the scheduler stopped ticking or the state store is unusable.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
# SIGTERM is a warm shutdown: running reports finish for up to daemon.shutdown_timeout (30 s), so
# give `docker stop -t` / stop_grace_period / terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dispatcher"]
CMD ["run", "-c", "/srv/reports/reports.yaml", "--health-host", "0.0.0.0", "--health-port", "9108", "--log-format", "json"]
