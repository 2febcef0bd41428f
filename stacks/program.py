"""The whole Pulumi program as one function: spec in, stack outputs out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ringfleet.providers.outputs import static_outputs
from ringfleet.spec import ClusterSpec
from stacks import aws_cluster, docker_cluster
from stacks.exports import stack_outputs


def build(spec: ClusterSpec, root: Path) -> dict[str, Any]:
    """Create the resources of `spec.cluster.provider`; return the outputs to export.

    `root` is the project root, which decides the baked node image tags (docker).
    """
    provider = spec.cluster.provider
    if provider == "static":
        # The machines exist already: the spec (validated on load) is the whole truth.
        return static_outputs(spec)
    if provider == "docker":
        return stack_outputs(spec, docker_cluster.build_docker(spec, root))
    if provider == "aws":
        return stack_outputs(spec, aws_cluster.build_aws(spec))
    raise ValueError(f"unknown provider {provider!r}")
