"""The whole Pulumi program as one function: spec in, stack outputs out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ringfleet.providers.outputs import static_outputs
from ringfleet.spec import ClusterSpec
from stacks import aws_cluster, docker_cluster
from stacks.exports import stack_outputs


def _static(spec: ClusterSpec, root: Path) -> dict[str, Any]:
    # The machines exist already: the spec (validated on load) is the whole truth.
    return static_outputs(spec)


def _docker(spec: ClusterSpec, root: Path) -> dict[str, Any]:
    return stack_outputs(spec, docker_cluster.build_docker(spec, root))


def _aws(spec: ClusterSpec, root: Path) -> dict[str, Any]:
    return stack_outputs(spec, aws_cluster.build_aws(spec))


# The resources of each provider; a spec names one of these (validated on load).
COMPONENTS: dict[str, Callable[[ClusterSpec, Path], dict[str, Any]]] = {
    "static": _static,
    "docker": _docker,
    "aws": _aws,
}


def build(spec: ClusterSpec, root: Path) -> dict[str, Any]:
    """Create the resources of the spec's provider; return the outputs to export.

    `root` is the project root, which decides the baked node image tags (docker).
    """
    component = COMPONENTS.get(spec.cluster.provider)
    if component is None:
        raise ValueError(f"unknown provider {spec.cluster.provider!r}")
    return component(spec, root)
