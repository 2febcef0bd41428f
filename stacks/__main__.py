"""Entry point of `pulumi up -s ENV`: read the spec from stack config, build, export."""

import sys
from pathlib import Path

# Pulumi runs this directory as a script (runpy), so only stacks/ is on sys.path;
# the project root must be too, for `stacks.*` and for an uninstalled `ringfleet`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402

from ringfleet.spec import cluster_from_mapping  # noqa: E402
from stacks.program import build  # noqa: E402

env = pulumi.get_stack()
raw = pulumi.Config("ringfleet").require_object("cluster")
spec = cluster_from_mapping(raw, display=f"Pulumi.{env}.yaml", env=env)
for key, value in build(spec, ROOT).items():
    pulumi.export(key, value)
