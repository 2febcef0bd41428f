#!/usr/bin/env bash
# Regenerate the locks of the node venvs: roles/tensorflow/files/requirements-<profile>-<cpu|cuda>.in
# -> .txt, every package pinned with the sha256 of each of its files on PyPI.
# Run on purpose (`make pins`), never implicitly: a new lock means new node images.
#
#   scripts/compile-pins.sh                        keep every pin that still fits its .in
#   scripts/compile-pins.sh --upgrade              move every dependency to its newest fitting release
#   scripts/compile-pins.sh --upgrade-package numpy
#   PINS=tf2.15-cpu scripts/compile-pins.sh        only the named locks
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
FILES=roles/tensorflow/files

die() { printf 'ringfleet: error: make pins: %s\n' "$*" >&2; exit 2; }
say() { printf 'pins: %s\n' "$*" >&2; }

[ -x "$VENV/bin/pip-compile" ] || die "pip-tools is missing; install it with $VENV/bin/pip install pip-tools"
# pip-compile resolves environment markers for the interpreter it runs on, so it
# must be the nodes' platform: CPython 3.11 on Linux x86_64 (Debian bookworm).
platform=$("$VENV/bin/python" -c 'import platform, sys; print("%d.%d-%s-%s" % (*sys.version_info[:2], platform.system(), platform.machine()))')
[ "$platform" = "3.11-Linux-x86_64" ] || die "the locks are made for Python 3.11 on Linux x86_64 (got $platform)"

# Only PyPI: a machine's pip configuration may add local indexes or find-links
# whose files would end up in the lock and be missing on the nodes.
export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= PIP_INDEX_URL=https://pypi.org/simple
export CUSTOM_COMPILE_COMMAND="make pins"

wanted=${PINS:-}
found=0
for in in "$FILES"/requirements-*.in; do
  name=${in#"$FILES"/requirements-}
  name=${name%.in}
  if [ -n "$wanted" ] && [[ " $wanted " != *" $name "* ]]; then
    continue
  fi
  found=1
  out=${in%.in}.txt
  say "resolving $in -> $out"
  # --allow-unsafe: pip, setuptools and wheel are in the venv too, so they are pinned too.
  # --strip-extras: the lock names plain distributions; pip installs it with --no-deps.
  "$VENV/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-find-links --no-emit-index-url --output-file "$out" "$@" "$in"
done
[ "$found" = 1 ] || die "no lock matches PINS='$wanted' in $FILES"
say "done; review the diff, then rebuild node images (ringfleet up bakes them again)"
