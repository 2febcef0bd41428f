"""Node side of a detached run (`ringfleet run --detach`): stdlib only, copied into the run.

Started with setsid on the launch node, it outlives the controller's session: it
runs launch.sh, appends every output line to output.log as it comes (what
`ringfleet logs -f` follows) and each rank's to rank-N.log, and when the launcher
ends writes status.json from the meta file the controller left, as `ringfleet run`
does for an attached run. A `cancel` file in the run directory (`ringfleet
cancel`) makes the reason "cancelled".

    python supervise.py RUN_DIR
"""

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

# The same tag as ringfleet.jobs.run.TAG_RE: mpirun --tag-output.
TAG_RE = re.compile(r"^\[(\d+),(\d+)\]<(stdout|stderr|stddiag)>:(.*)$")
META_NAME = "meta.json"
CANCEL_NAME = "cancel"
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130


def reason_for(code, cancelled, timeout):
    if cancelled:
        return "cancelled"
    if code == EXIT_TIMEOUT:
        return f"timeout after {timeout} s"
    return "completed" if code == 0 else f"failed (job exit code {code})"


def main(run_dir):
    with open(os.path.join(run_dir, META_NAME)) as f:
        meta = json.load(f)
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    ranks = {}
    proc = subprocess.Popen(
        ["bash", os.path.join(run_dir, "launch.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    with open(os.path.join(run_dir, "output.log"), "w", encoding="utf-8") as out:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            out.write(line + "\n")
            out.flush()
            match = TAG_RE.match(line)
            if match:
                rank = int(match.group(2))
                if rank not in ranks:
                    ranks[rank] = open(os.path.join(run_dir, f"rank-{rank}.log"), "w")
                ranks[rank].write(match.group(4) + "\n")
                ranks[rank].flush()
    for handle in ranks.values():
        handle.close()
    code = proc.wait()
    cancelled = os.path.exists(os.path.join(run_dir, CANCEL_NAME))
    if cancelled:
        code = EXIT_CANCELLED
    count = meta.get("ranks") or 0
    status = {
        **meta,
        "exit_code": code,
        "reason": reason_for(code, cancelled, meta.get("timeout_seconds")),
        "started": started_at,
        "seconds": round(time.monotonic() - started, 2),
        # The launcher's code says nothing per rank beyond success; None is "not known".
        "rank_exits": {str(r): (0 if code == 0 else None) for r in range(count)},
        "cancelled": cancelled,
    }
    path = os.path.join(run_dir, "status.json")
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(status, indent=2) + "\n")
    # Readers see no record or a whole one, never half.
    os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
