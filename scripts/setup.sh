#!/usr/bin/env bash
# Prepare a fresh machine for ringfleet: the project virtualenv and a running Docker engine.
# Idempotent: re-running it changes nothing that is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.ringfleet-installed
DOCKERD_LOG=${RINGFLEET_DOCKERD_LOG:-/var/log/ringfleet-dockerd.log}

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'ringfleet: error: setup: %s\n' "$*" >&2; exit 2; }

# --- Python virtualenv: reinstall only when pyproject.toml changed.
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python >= 3.11 is needed (got $("$PYTHON" -V 2>&1)); set PYTHON=/path/to/python3.11"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  say "installing the virtualenv in $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q -e '.[test]'
  echo "$want" > "$STAMP"
fi

# --- Host packages ringfleet drives: Docker engine, debootstrap (base image), iperf3 (bench).
need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v iperf3 >/dev/null 2>&1 || need_pkgs+=(iperf3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_pkgs[*]} with apt-get"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
  else
    die "missing ${need_pkgs[*]}; install them as root (Debian: apt-get install ${need_pkgs[*]})"
  fi
fi

# --- Docker engine: start dockerd in the background when nothing answers.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "the Docker engine is not running and starting it needs root"
  say "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
fi
say "ready: $("$VENV/bin/python" -V), docker $(docker version --format '{{.Server.Version}}')"
