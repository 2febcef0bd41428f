"""Pulumi mocks for the ringfleet program, for unit tests without the engine or a cloud.

`RingfleetMocks` answers by resource type with the values the real providers
compute (addresses, DNS names, key material); `RecordingMonitor` also keeps
what the mocks API leaves out (protect, parent, provider, dependencies), so tests
check the options the program really registered.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from ringfleet.spec import ClusterSpec

MOCK_DEBIAN_AMI = "ami-0debian12mock"
MOCK_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nbW9jaw==\n-----END OPENSSH PRIVATE KEY-----\n"
)
MOCK_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2s= ringfleet-mock"
MOCK_EFS_DNS = "fs-0a1b2c3d4e5f67890.efs.eu-west-1.amazonaws.com"


@dataclass
class Registration:
    """One resource as the program registered it."""

    typ: str
    name: str
    custom: bool
    protect: bool
    parent: str
    provider: str
    dependencies: list[str]
    ignore_changes: list[str]
    inputs: dict[str, Any] = field(default_factory=dict)
    urn: str = ""


class RecordingMonitor(MockMonitor):
    """A MockMonitor that keeps every RegisterResource request's options."""

    def __init__(self, mocks: RingfleetMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = self.mocks.inputs_of.get((request.type, request.name), {})
            self.registrations.append(
                Registration(
                    typ=request.type,
                    name=request.name,
                    custom=request.custom,
                    protect=bool(request.protect),
                    parent=request.parent,
                    provider=request.provider,
                    dependencies=list(request.dependencies),
                    ignore_changes=list(request.ignoreChanges),
                    inputs=inputs,
                    urn=response.urn,
                )
            )
        return response


def mock_instance_id(name: str) -> str:
    """An EC2-shaped instance id (`i-` and 17 hex digits), stable per resource name."""
    return "i-" + hashlib.sha256(name.encode()).hexdigest()[:17]


class RingfleetMocks(pulumi.runtime.Mocks):
    """Answers by resource type; `addresses` (node -> privateIp/publicIp) pins node IPs."""

    def __init__(self, addresses: dict[str, dict[str, str | None]] | None = None):
        self.addresses = addresses or {}
        self.inputs_of: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[pulumi.runtime.MockCallArgs] = []
        self._next_host = 10

    def _address(self, name: str, subnet: str = "10.0.0.0/16") -> dict[str, str | None]:
        if name not in self.addresses:
            self._next_host += 1
            host = ipaddress.ip_network(subnet)[self._next_host]
            self.addresses[name] = {"privateIp": str(host), "publicIp": None}
        return self.addresses[name]

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.inputs_of[(args.typ, args.name)] = dict(args.inputs)
        state = dict(args.inputs)
        if args.typ == "aws:ec2/instance:Instance":
            addr = self._address(args.name)
            state.update(privateIp=addr["privateIp"], publicIp=addr["publicIp"])
            return mock_instance_id(args.name), state
        elif args.typ == "docker:index/container:Container":
            addr = self._address(args.name)
            state["networkDatas"] = [
                {
                    "ipAddress": addr["privateIp"],
                    "networkName": args.inputs["networksAdvanced"][0]["name"],
                }
            ]
        elif args.typ == "aws:efs/fileSystem:FileSystem":
            state["dnsName"] = MOCK_EFS_DNS
        elif args.typ == "tls:index/privateKey:PrivateKey":
            state.update(privateKeyOpenssh=MOCK_PRIVATE_KEY, publicKeyOpenssh=MOCK_PUBLIC_KEY)
        elif args.typ in ("aws:ec2/keyPair:KeyPair", "aws:ec2/placementGroup:PlacementGroup"):
            # Auto-named by the provider: the physical name is the logical one plus a suffix.
            state.setdefault("keyName" if "keyPair" in args.typ else "name", f"{args.name}-mock")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        self.calls.append(args)
        if args.token == "aws:ec2/getAmi:getAmi":
            names = [
                v for f in args.args.get("filters", []) if f["name"] == "name" for v in f["values"]
            ]
            ami = MOCK_DEBIAN_AMI
            return {"id": ami, "imageId": ami, "name": names[0] if names else ""}
        return {}


@dataclass
class ProgramRun:
    """Everything a run of `stacks.program.build` under mocks produced, as plain data."""

    outputs: dict[str, Any]
    secret_keys: set[str]
    registrations: list[Registration]
    calls: list[pulumi.runtime.MockCallArgs]
    addresses: dict[str, dict[str, str | None]]
    """The node addresses the mocks handed out."""

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.typ == typ]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)


def set_ringfleet_mocks(
    stack: str, addresses: dict[str, dict[str, str | None]] | None = None
) -> tuple[RingfleetMocks, RecordingMonitor]:
    """Fresh mocks and monitor for one run: runs never see each other's resources."""
    mocks = RingfleetMocks(addresses)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="ringfleet", stack=stack, preview=False, monitor=monitor
    )
    return mocks, monitor


def run_program(
    spec: ClusterSpec, root: Path, addresses: dict[str, dict[str, str | None]] | None = None
) -> ProgramRun:
    """Run the whole program for `spec` under fresh mocks; resolve every output."""
    from stacks.program import build

    mocks, monitor = set_ringfleet_mocks(spec.env, addresses)
    resolved: dict[str, Any] = {}
    secret: set[str] = set()

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        exported = build(spec, root)
        keys = list(exported)
        values = [pulumi.Output.from_input(exported[k]) for k in keys]
        flags = [pulumi.Output.from_input(v.is_secret()) for v in values]

        def keep(parts: list[Any]) -> None:
            for k, value, is_secret in zip(
                keys, parts[: len(keys)], parts[len(keys) :], strict=True
            ):
                # Resolving unwraps secrets; remember which were, to check them.
                resolved[k] = value
                if is_secret:
                    secret.add(k)

        return pulumi.Output.all(*values, *flags).apply(keep)

    run()
    return ProgramRun(
        resolved, secret, list(monitor.registrations), list(mocks.calls), dict(mocks.addresses)
    )
