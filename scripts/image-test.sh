#!/usr/bin/env bash
# make image-test: build the Dockerfile for real with podman on a Debian base made here by
# debootstrap (Docker Hub is not needed), run the image in each sandbox mode with the least
# privilege that mode needs, and check /health and /execute through the published port.
#
# Cached between runs (under $IMAGE_CACHE, default .cache/image, gitignored): the debootstrap
# tarball and the base image imported from it. Removed on exit: the containers and the image
# this run built (KEEP_IMAGE=1 keeps the image).
#
# This host's quirks live here, not in the Dockerfile:
#   --runtime runc       crun refuses this host's hybrid cgroup v1/v2 layout
#   --ulimit nofile/nproc podman raises both limits by default, which root cannot do here
#                        (no CAP_SYS_RESOURCE)
#   the host's CA bundle HTTPS leaves through a proxy with its own CA: pip in the build must
#                        trust it (mounted read-only into the build, never into the image)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${IMAGE_CACHE:-$PWD/.cache/image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# python3.11-venv (its distutils dependency is virtual: debootstrap needs it named), tini and
# the C++ runtime are what the Dockerfile would otherwise apt-get.
BASE_PACKAGES=python3.11,python3.11-venv,python3-distutils,tini,libstdc++6,zlib1g
ARCH=$(dpkg --print-architecture)
KEY=$(printf '%s\n' "$SUITE" "$ARCH" "$BASE_PACKAGES" | cksum | cut -d' ' -f1)
TARBALL=$CACHE/debian-$SUITE-minbase-$ARCH-$KEY.tar
BASE_IMAGE=localhost/safe-exec-base:$SUITE-$KEY
IMAGE=localhost/safe-exec:image-test-$$
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

fail() {
  echo "image-test: $*" >&2
  exit 1
}

for tool in podman runc debootstrap python3 curl; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install podman runc debootstrap python3 curl; .ci/run installs them)"
done
[ "$(id -u)" -eq 0 ] || fail "must run as root (debootstrap, and rootful podman for the sandbox's namespaces)"

# Podman times HEALTHCHECKs with systemd timers; without systemd it logs an error for each
# container it starts or removes (harmless: the check is run on demand below).
podman_quiet() { "${PODMAN[@]}" "$@" 2> >(grep -v 'systemd connection' >&2); }

CONTAINERS=()
cleanup() {
  local status=$?
  for container in "${CONTAINERS[@]}"; do
    podman_quiet rm -f -t 0 "$container" >/dev/null 2>&1 || true
  done
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then
    "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
  fi
  rm -rf "$CACHE/rootfs.$$"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

seconds() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f s", b - a }'; }

# --- 1. the base image: debootstrap once, then reuse the tarball -------------------------
mkdir -p "$CACHE"
started=$(seconds)
if [ ! -s "$TARBALL" ]; then
  echo "image-test: debootstrap --variant=minbase $SUITE ($BASE_PACKAGES) from $MIRROR"
  rootfs=$CACHE/rootfs.$$
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; fail "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  # debootstrap keeps the .debs it installed and the package lists: not part of a base.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$rootfs"
fi
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  "${PODMAN[@]}" import --quiet "$TARBALL" "$BASE_IMAGE" >/dev/null
fi
echo "image-test: base $BASE_IMAGE ready ($(since "$started"))"

# --- 2. build ----------------------------------------------------------------------------
# The CA bundle pip must trust: the one this host's own tools are told to use.
CA_FILE=${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}}
BUILD_ARGS=(--build-arg "BASE=$BASE_IMAGE")
if [ -s "$CA_FILE" ]; then
  BUILD_ARGS+=(--volume "$CA_FILE:/run/host-ca.pem:ro" --build-arg CA_BUNDLE=/run/host-ca.pem)
fi
# Proxy variables, when the host has them, reach the build's RUN steps (Docker's predefined
# build arguments; not stored in the image).
for name in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  if [ -n "${!name:-}" ]; then BUILD_ARGS+=(--build-arg "$name=${!name}"); fi
done
started=$(seconds)
# --format docker: OCI image configs cannot carry the HEALTHCHECK.
"${PODMAN[@]}" build --format docker "${ULIMITS[@]}" "${BUILD_ARGS[@]}" -t "$IMAGE" . \
  >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; fail "podman build failed (log: $CACHE/build.log)"; }
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
echo "image-test: built $IMAGE in $(since "$started"), $((size / 1000000)) MB"
"${PODMAN[@]}" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | grep /health >/dev/null \
  || fail "the image has no HEALTHCHECK on /health"

# --- 3. run each mode with its least privilege --------------------------------------------
# start NAME [podman run options...]: start the image on PORT=9090 (not 8080, to show PORT is
# honoured), published on a free loopback port; sets CONTAINER and PORT.
start() {
  local name=$1
  shift
  CONTAINER=safe-exec-image-test-$$-$name
  CONTAINERS+=("$CONTAINER")
  podman_quiet run -d --name "$CONTAINER" "${ULIMITS[@]}" -e PORT=9090 -e WALL_TIME_S=2 \
    --health-interval disable -p 127.0.0.1::9090 "$@" "$IMAGE" >/dev/null
  PORT=$("${PODMAN[@]}" port "$CONTAINER" 9090/tcp | head -1 | sed 's/.*://')
}

show_log_and_fail() {
  echo "image-test: the container's log:" >&2
  "${PODMAN[@]}" logs "$CONTAINER" 2>&1 | tail -40 >&2
  fail "$*"
}

# run_mode NAME SANDBOX "LAYER ..." [podman run options...]: start the image, check it,
# and remove it.
run_mode() {
  local name=$1 sandbox=$2 layers=$3
  shift 3
  echo "image-test: $name: podman run $*"
  start "$name" "$@"
  # Wait for the sandbox to be chosen (the warm pools preload numpy and pandas first); a
  # container that exits (a start-up failure) fails at once.
  local waited=0
  until curl -fsS "http://127.0.0.1:$PORT/health" 2>/dev/null | grep '"sandbox":"' >/dev/null; do
    if [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$CONTAINER")" != true ] \
      || [ "$waited" -ge 180 ]; then
      show_log_and_fail "$name: the service did not start (or chose no sandbox within 180 s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  # shellcheck disable=SC2086  # $layers is a list of words
  python3 scripts/image_check.py "http://127.0.0.1:$PORT" "$sandbox" $layers \
    || show_log_and_fail "$name mode failed"
  local init
  init=$("${PODMAN[@]}" exec "$CONTAINER" cat /proc/1/comm)
  [ "$init" = tini ] || fail "$name: PID 1 is $init, not tini"
  # The image's own HEALTHCHECK (run on demand: no systemd here to time it).
  "${PODMAN[@]}" healthcheck run "$CONTAINER" >/dev/null || fail "$name: the HEALTHCHECK failed"
  # (grep without -q below: under pipefail an early exit could fail the writer with SIGPIPE.)
  # tini passes SIGTERM on and the service drains (entrypoints/serve.py): it completes its
  # lifespan shutdown and exits 0; uvicorn's own handling would re-raise the signal (143), a
  # SIGKILL after the stop timeout would be 137.
  podman_quiet stop -t 30 "$CONTAINER" >/dev/null
  local status
  status=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$CONTAINER")
  [ "$status" = 0 ] || show_log_and_fail "$name: stopped with status $status, not 0 (drained)"
  "${PODMAN[@]}" logs "$CONTAINER" 2>&1 | grep 'Application shutdown complete' >/dev/null \
    || show_log_and_fail "$name: no clean shutdown on SIGTERM"
  podman_quiet rm -f -t 0 "$CONTAINER" >/dev/null
}

# each_needed NAME SANDBOX "BASE OPTIONS" "OPTION" ...: for each OPTION (one flag and its
# value), start the image with BASE OPTIONS and every OPTION but that one, and check that the
# service no longer gets SANDBOX: each granted privilege is needed. (Options are split with
# `read`, which does not expand the * of unmask=/proc/*.)
each_needed() {
  local name=$1 sandbox=$2 base=$3
  shift 3
  local -a base_options options pair
  read -r -a base_options <<<"$base"
  local dropped
  for dropped in "$@"; do
    options=()
    local option
    for option in "$@"; do
      if [ "$option" != "$dropped" ]; then
        read -r -a pair <<<"$option"
        options+=("${pair[@]}")
      fi
    done
    echo "image-test: $name without $dropped:"
    start "$name-without" "${base_options[@]}" "${options[@]}"
    python3 scripts/image_check.py --not "http://127.0.0.1:$PORT" "$sandbox" \
      || show_log_and_fail "$name: $dropped is not needed, or the service did not settle"
    podman_quiet rm -f -t 0 "$CONTAINER" >/dev/null
  done
}

# The least privilege each mode needs; the same flags are in the Dockerfile's header and the
# README, with Docker's spelling. --read-only: the service writes only to /tmp (one-shot
# runners' scratch) and /run (its uid lease), tmpfs here, as Docker's --read-only needs them
# spelled out.
HARDENING="--cap-drop ALL --security-opt no-new-privileges --read-only --read-only-tmpfs=false --tmpfs /tmp --tmpfs /run"
read -r -a HARDENING_OPTIONS <<<"$HARDENING"
# nsjail: SETUID/SETGID to map each slot's uid into its user namespace; seccomp unconfined
# because the default profile refuses the namespaces; /proc unmasked because the kernel
# refuses a fresh /proc in a user namespace while parts of the container's are masked.
NSJAIL_OPTIONS=("--cap-add SETUID" "--cap-add SETGID" "--security-opt seccomp=unconfined"
  "--security-opt unmask=/proc/*")
NSJAIL_FLAGS=(--cap-add SETUID --cap-add SETGID --security-opt seccomp=unconfined
  --security-opt 'unmask=/proc/*')
NSJAIL_LAYERS="user pid mount network ipc uts cgroup-namespace read-only-root seccomp rlimits uid no-capabilities no-new-privs"
run_mode nsjail nsjail-warm "$NSJAIL_LAYERS" "${HARDENING_OPTIONS[@]}" "${NSJAIL_FLAGS[@]}"
each_needed nsjail nsjail-warm "$HARDENING" "${NSJAIL_OPTIONS[@]}"

# Per-execution memory/pids cgroups (cgroup v1, which is what the service drives) need the
# cgroup tree writable: only by mounting the host's, which lets the container write every
# cgroup on the host. Opt-in, so tested here too.
if [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/pids ]; then
  run_mode nsjail-cgroups nsjail-warm "$NSJAIL_LAYERS cgroup-limits" "${HARDENING_OPTIONS[@]}" \
    "${NSJAIL_FLAGS[@]}" --volume /sys/fs/cgroup:/sys/fs/cgroup:rw
else
  echo "image-test: nsjail-cgroups: not run (no cgroup v1 memory and pids hierarchies here;" \
    "the service's per-execution cgroups are v1 only)"
fi

# FORCE_COMPAT=1 (rlimit-warm): SETUID/SETGID to run each script as its slot's uid, KILL to
# signal those uids, SYS_ADMIN for its mount, PID, network, IPC and UTS namespaces (the
# default seccomp profile allows them to SYS_ADMIN; no user namespace, so /proc stays masked).
COMPAT_OPTIONS=("--cap-add SETUID" "--cap-add SETGID" "--cap-add KILL" "--cap-add SYS_ADMIN")
run_mode compat rlimit-warm \
  "uid rlimits network mount ipc uts private-tmpfs seccomp minimal-root pid proc-hidepid no-new-privs" \
  "${HARDENING_OPTIONS[@]}" -e FORCE_COMPAT=1 --cap-add SETUID --cap-add SETGID --cap-add KILL \
  --cap-add SYS_ADMIN
each_needed compat rlimit-warm "$HARDENING -e FORCE_COMPAT=1" "${COMPAT_OPTIONS[@]}"

echo "image-test: passed (image $((size / 1000000)) MB)"
