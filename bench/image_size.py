"""g  node image size (#21 part 4): each built profile image against the 2.0 GB target,
   and where its bytes are, so the next cut is chosen by size, not by guess.

Usage: flock /tmp/rf-docker.lock .venv/bin/python bench/image_size.py [PROFILE | TAG ...]
(a TAG, such as an earlier build kept for comparison, is measured as it is.)
Writes bench/results/g-image-size.md. A benchmark, not a test: it reports what it measures.
It reads the images of env `local` (`ringfleet images list`) and runs one throwaway
container of each to measure its parts with du; it bakes nothing.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from ringfleet.images.catalog import catalog  # noqa: E402
from ringfleet.paths import NODE_VENV  # noqa: E402
from ringfleet.providers.docker.engine import docker_client  # noqa: E402
from ringfleet.spec import load_spec  # noqa: E402

TARGET_GB = 2.0
STRIP_SCRIPTS = ROOT / "roles" / "tensorflow" / "files"
STRIP_MOUNT = "/ringfleet-strip"
SITE = f"{NODE_VENV}/lib/python3*/site-packages"
# Each part as a shell expression printing bytes; the parts overlap on purpose (the
# venv holds TensorFlow, oneMKL and bytecode), each answers "what would dropping it save".
PARTS = {
    "whole file system": "du -sxb / | cut -f1",
    "node venv": f"du -sb {NODE_VENV} | cut -f1",
    "TensorFlow package": f"du -sbc {SITE}/tensorflow | tail -1 | cut -f1",
    "oneMKL, OpenMP, TBB and SYCL runtimes (venv/lib/*.so*, the mkl, intel-openmp, tbb "
    "and intel-cmplr-lib-ur wheels)": f"du -sbc {NODE_VENV}/lib/lib* | tail -1 | cut -f1",
    "Python bytecode (*.pyc)": "find / -xdev -name '*.pyc' -printf '%s\\n' "
    "| awk '{s+=$1} END {print s+0}'",
    "/usr (Debian packages)": "du -sb /usr | cut -f1",
    "compilers (gcc, g++, cmake)": "du -sbc $(command -v gcc g++ cmake 2>/dev/null) /usr/lib/gcc "
    "2>/dev/null | tail -1 | cut -f1",
    "apt's index (/var/lib/apt/lists)": "du -sb /var/lib/apt/lists | cut -f1",
    "Debian docs, manual pages, translations (/usr/share/doc, man, info, locale)": "du -sbc "
    "/usr/share/doc /usr/share/man /usr/share/info /usr/share/locale | tail -1 | cut -f1",
    # What the tensorflow role's strip would still remove (its own script, mounted).
    "symbol tables and debug info in the venv's libraries": f"{NODE_VENV}/bin/python "
    f"{STRIP_MOUNT}/strip_symbols.py {NODE_VENV} --list | sed 's/.*\"bytes\": \\([0-9]*\\).*/\\1/'",
}


def _docker(*argv: str) -> str:
    return subprocess.run(["docker", *argv], check=True, capture_output=True, text=True).stdout


def measure(tag: str) -> dict[str, int]:
    script = "; ".join(f"echo $({cmd})" for cmd in PARTS.values())
    mount = f"{STRIP_SCRIPTS}:{STRIP_MOUNT}:ro"
    out = _docker("run", "--rm", "-v", mount, "--entrypoint", "/bin/sh", tag, "-c", script)
    return dict(zip(PARTS, (int(v or 0) for v in out.split()), strict=True))


def main(profiles: list[str]) -> None:
    tags = [a for a in profiles if ":" in a]
    names = [a for a in profiles if ":" not in a]
    entries = catalog(load_spec("local", ROOT), ROOT, docker_client())
    # Named tags alone measure just those; no argument measures every built profile.
    wanted = [r for r in entries if r.built and (r.profile in names or not profiles)]
    rows = [(r.profile, r.tag) for r in wanted]
    rows += [(tag.split(":", 1)[1].split("-", 1)[0], tag) for tag in tags]
    lines = [
        "# g: node image size",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on this machine; target < {TARGET_GB} GB "
        "(image size as Docker reports it, 1 GB = 10^9 bytes).",
        "",
    ]
    for profile, tag in rows:
        size = int(_docker("image", "inspect", "-f", "{{.Size}}", tag).strip())
        parts = measure(tag)
        verdict = "meets" if size / 1e9 < TARGET_GB else "misses"
        lines += [
            f"## {profile}: {size / 1e9:.2f} GB, {verdict} the target",
            "",
            f"`{tag}`",
            "",
        ]
        lines += ["| part | GB |", "|---|---|"]
        lines += [f"| {name} | {value / 1e9:.3f} |" for name, value in parts.items()]
        lines.append("")
    out = BENCH / "results" / "g-image-size.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main(sys.argv[1:])
