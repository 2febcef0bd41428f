"""The Pulumi resource graph offline: compare two recordings and estimate replacements.

A recording is what the Pulumi program registered under mocks
(`stacks.mocks.run_program`): no engine, no cloud, no credentials. Mocks cannot
ask a provider whether a change needs a new resource, so `REPLACE_INPUTS` says,
per resource type, which inputs force one (the providers mark them forceNew).
Every other changed input is an update in place. This is an estimate;
`ringfleet preview --live` asks the real providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Every input forces a new resource: Docker cannot change these objects in place.
ALL_INPUTS = "*"

REPLACE_INPUTS: dict[str, tuple[str, ...]] = {
    # A provider for another region manages none of the old resources: all are recreated.
    "pulumi:providers:aws": ("region",),
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"),
    "aws:ec2/internetGateway:InternetGateway": (),
    "aws:ec2/routeTable:RouteTable": ("vpcId",),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ("subnetId", "gatewayId"),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "namePrefix", "description", "vpcId"),
    "aws:ec2/keyPair:KeyPair": ("keyName", "keyNamePrefix", "publicKey"),
    "aws:ec2/placementGroup:PlacementGroup": ("name", "strategy", "partitionCount", "spreadLevel"),
    "aws:ec2/instance:Instance": (
        "ami",
        "availabilityZone",
        "subnetId",
        "keyName",
        "placementGroup",
        "associatePublicIpAddress",
        "privateIp",
        "instanceMarketOptions",
        "ebsBlockDevices",
        "rootBlockDevice.encrypted",
        "rootBlockDevice.kmsKeyId",
    ),
    "aws:efs/fileSystem:FileSystem": (
        "creationToken",
        "encrypted",
        "kmsKeyId",
        "performanceMode",
        "availabilityZoneName",
    ),
    "aws:efs/mountTarget:MountTarget": ("fileSystemId", "subnetId", "ipAddress"),
    "tls:index/privateKey:PrivateKey": ("algorithm", "rsaBits", "ecdsaCurve"),
    "docker:index/network:Network": (ALL_INPUTS,),
    "docker:index/volume:Volume": (ALL_INPUTS,),
    # `docker update` changes only memory and CPU shares of a running container.
    "docker:index/container:Container": (
        "name",
        "hostname",
        "image",
        "labels",
        "networksAdvanced",
        "mounts",
        "cpus",
        "cpuSet",
        "command",
        "shmSize",
        "ulimits",
        "init",
        "deviceRequests",
    ),
}

# Types whose resources hold data that a replacement or removal loses.
STATEFUL_TYPES = frozenset(
    {
        "aws:efs/fileSystem:FileSystem",
        "aws:ebs/volume:Volume",
        "docker:index/volume:Volume",
    }
)

ADD = "add"
REMOVE = "remove"
CHANGE = "change"
REPLACE = "replace"
# Report order: what loses data or machines first.
OP_ORDER = (REPLACE, REMOVE, ADD, CHANGE)


class _Missing:
    """An input that one side does not set (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Resource:
    """One registered resource, as the recording holds it."""

    urn: str
    type: str
    name: str
    custom: bool
    protect: bool
    provider: str
    """`<provider URN>::<id>`, or empty for the default provider and components."""
    dependencies: tuple[str, ...]
    ignore_changes: tuple[str, ...]
    inputs: dict[str, Any]

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Resource:
        return cls(
            urn=data["urn"],
            type=data["type"],
            name=data["name"],
            custom=bool(data.get("custom", True)),
            protect=bool(data.get("protect", False)),
            provider=data.get("provider") or "",
            dependencies=tuple(data.get("dependencies") or ()),
            ignore_changes=tuple(data.get("ignore_changes") or ()),
            inputs=dict(data.get("inputs") or {}),
        )

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def stateful(self) -> bool:
        return self.type in STATEFUL_TYPES


@dataclass(frozen=True)
class InputChange:
    path: str
    """Dotted input path, e.g. `rootBlockDevice.volumeSize` or `routes[0].cidrBlock`."""
    base: Any
    head: Any
    replaces: bool
    """The resource type's REPLACE_INPUTS covers this path."""


@dataclass(frozen=True)
class Change:
    """What happens to one resource between the base and head graphs."""

    op: str
    resource: Resource
    """The head's resource, or the base's for a removal."""
    inputs: tuple[InputChange, ...] = ()
    reason: str = ""
    """Why a resource is replaced when no input of its own says so."""
    protected: bool = False
    """Protected on either side: Pulumi refuses to delete it until unprotected."""
    depends_on_replaced: tuple[str, ...] = ()
    """Names of replaced resources this one reads: it may be replaced too."""

    @property
    def flagged(self) -> bool:
        """Replacing or removing it loses data, or Pulumi refuses to (protected)."""
        return self.op in (REPLACE, REMOVE) and (self.protected or self.resource.stateful)

    def why_flagged(self) -> str:
        words = [("protected", self.protected), ("stateful", self.resource.stateful)]
        return ", ".join(word for word, on in words if on)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': [1]}} -> {'a.b[0]': 1}; empty containers stay as values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _covers(rule: str, path: str) -> bool:
    """`rootBlockDevice` covers `rootBlockDevice.encrypted` and `rootBlockDevice[0]`."""
    return rule == ALL_INPUTS or path == rule or path.startswith((rule + ".", rule + "["))


def forces_replacement(typ: str, path: str) -> bool:
    return any(_covers(rule, path) for rule in REPLACE_INPUTS.get(typ, ()))


def input_changes(base: Resource, head: Resource) -> tuple[InputChange, ...]:
    """Changed inputs, skipping what the head's ignore_changes hides from Pulumi."""
    old, new = flatten(base.inputs), flatten(head.inputs)
    changes = []
    for path in sorted(set(old) | set(new)):
        if any(_covers(rule, path) for rule in head.ignore_changes):
            continue
        before, after = old.get(path, MISSING), new.get(path, MISSING)
        if _same(before, after):
            continue
        changes.append(InputChange(path, before, after, forces_replacement(head.type, path)))
    return tuple(changes)


def _same(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    # Numbers compare by value: a JSON round trip may turn 22 into 22.0 on one side.
    return a == b


def diff_graphs(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> list[Change]:
    """Every resource added, removed, changed or replaced, matched by URN, in report order."""
    old = {r.urn: r for r in map(Resource.from_record, base)}
    new = {r.urn: r for r in map(Resource.from_record, head)}
    changes: dict[str, Change] = {}
    for urn, res in new.items():
        if urn not in old:
            changes[urn] = Change(ADD, res)
            continue
        inputs = input_changes(old[urn], res)
        protected = old[urn].protect or res.protect
        if any(c.replaces for c in inputs):
            changes[urn] = Change(REPLACE, res, inputs, protected=protected)
        elif inputs:
            changes[urn] = Change(CHANGE, res, inputs, protected=protected)
    for urn, res in old.items():
        if urn not in new:
            changes[urn] = Change(REMOVE, res, protected=res.protect)
    _replace_children_of_replaced_providers(changes, new, old)
    _mark_dependents(changes, new)
    return sorted(
        changes.values(),
        key=lambda c: (OP_ORDER.index(c.op), c.resource.type, c.resource.name),
    )


def _replace_children_of_replaced_providers(
    changes: dict[str, Change], new: dict[str, Resource], old: dict[str, Resource]
) -> None:
    replaced = {urn for urn, c in changes.items() if c.op == REPLACE}
    providers = {urn for urn in replaced if new[urn].type.startswith("pulumi:providers:")}
    for urn, res in new.items():
        if urn in old and res.provider_urn in providers and urn not in replaced:
            prev = changes.get(urn)
            changes[urn] = Change(
                REPLACE,
                res,
                prev.inputs if prev else (),
                reason=f"its provider {new[res.provider_urn].name} is replaced",
                protected=old[urn].protect or res.protect,
            )


def _mark_dependents(changes: dict[str, Change], new: dict[str, Resource]) -> None:
    """A replaced resource gets a new id; what reads it may need replacing as well."""
    replaced = {urn for urn, c in changes.items() if c.op == REPLACE}
    for urn, res in new.items():
        hits = tuple(new[d].name for d in res.dependencies if d in replaced and d in new)
        change = changes.get(urn)
        if not hits or (change is not None and change.op in (REPLACE, ADD)):
            continue
        changes[urn] = Change(
            CHANGE if change is None else change.op,
            res,
            change.inputs if change else (),
            protected=res.protect,
            depends_on_replaced=hits,
        )


def counts(changes: list[Change]) -> dict[str, int]:
    """How many resources each op touches, in report order, zeros left out."""
    out = {op: sum(1 for c in changes if c.op == op) for op in OP_ORDER}
    return {op: n for op, n in out.items() if n}
