"""Turn what a provider created into the stack outputs every provider shares.

The shape is `ringfleet.providers.outputs.static_outputs`, filled with the addresses the
resources were given, so the inventory renderer reads one format for all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from ringfleet.providers import outputs as out
from ringfleet.spec import ClusterSpec


@dataclass
class Made:
    """What a provider's components expose to the stack outputs."""

    addresses: dict[str, dict[str, pulumi.Input[str | None]]] = field(default_factory=dict)
    """Node name -> {"privateIp": ..., "publicIp": ...} (aws adds "instanceId"), as the
    resources report them."""
    storage_server: pulumi.Input[str | None] = None
    """Where nodes mount shared storage from (EFS DNS name, NFS head IP), if created."""
    private_key: pulumi.Output[str] | None = None
    """The SSH private key the stack generated, if any; only ever exported as a secret."""


def _with_server(data: dict[str, Any], server: str | None) -> dict[str, Any]:
    if server is not None:
        data[out.OUT_STORAGE] = {**data[out.OUT_STORAGE], "server": server}
    return data


def stack_outputs(spec: ClusterSpec, made: Made) -> dict[str, Any]:
    """One Output per key of `providers.outputs.REQUIRED_KEYS`, plus the secret key if made."""
    whole = pulumi.Output.all(
        addresses=pulumi.Output.from_input(made.addresses),
        server=pulumi.Output.from_input(made.storage_server),
    ).apply(lambda v: _with_server(out.static_outputs(spec, v["addresses"]), v["server"]))
    keys = out.REQUIRED_KEYS + ((out.OUT_SCHEDULER,) if spec.slurm_controller else ())
    result: dict[str, Any] = {key: whole.apply(lambda d, k=key: d[k]) for key in keys}
    if made.private_key is not None:
        result[out.OUT_SSH_PRIVATE_KEY] = pulumi.Output.secret(made.private_key)
    return result
