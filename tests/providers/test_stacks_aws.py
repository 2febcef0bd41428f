"""The aws stack under Pulumi's mocks: network, instances, storage, key and outputs of aws-dev."""

from __future__ import annotations

import importlib
import inspect
import json

import pulumi  # noqa: E402
import pytest
import yaml

from ringfleet.providers import outputs as out  # noqa: E402
from ringfleet.spec import cluster_from_mapping, load_spec  # noqa: E402
from stacks import aws_cluster  # noqa: E402
from stacks.mocks import (  # noqa: E402
    MOCK_DEBIAN_AMI,
    MOCK_EFS_DNS,
    MOCK_PRIVATE_KEY,
    MOCK_PUBLIC_KEY,
    ProgramRun,
    mock_instance_id,
    run_program,
    set_ringfleet_mocks,
)
from stacks.options import stateful_opts  # noqa: E402
from tests.conftest import ROOT

SAMPLE = ROOT / "tests" / "data" / "outputs-aws-dev.json"
SPEC = load_spec("aws-dev", ROOT)
POOLS = sorted(SPEC.pools)
ADMIN_CIDR = SPEC.cluster.network.admin_cidr
ANYWHERE = {"0.0.0.0/0", "::/0"}

PROVIDER = "pulumi:providers:aws"
INSTANCE = "aws:ec2/instance:Instance"
PLACEMENT_GROUP = "aws:ec2/placementGroup:PlacementGroup"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
TAGGABLE = [
    "aws:ec2/vpc:Vpc",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable",
    SUBNET,
    SECURITY_GROUP,
    "aws:ec2/keyPair:KeyPair",
    PLACEMENT_GROUP,
    INSTANCE,
    FILE_SYSTEM,
]
UNTAGGABLE = ["aws:ec2/routeTableAssociation:RouteTableAssociation", MOUNT_TARGET, PRIVATE_KEY]
BASE_TAGS = [aws_cluster.TAG_CLUSTER, aws_cluster.TAG_ENV, aws_cluster.TAG_MANAGED_BY]


def sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def sample_addresses() -> dict[str, dict[str, str | None]]:
    """Pin the mocks' node addresses to the sample's, so the outputs can equal it."""
    return {
        node["name"]: {"privateIp": node["privateIp"], "publicIp": node["publicIp"]}
        for pool in sample()[out.OUT_POOLS].values()
        for node in pool["nodes"]
    }


def with_storage(storage: dict) -> object:
    raw = SPEC.cluster.model_dump(mode="json")
    raw["storage"] = storage
    return cluster_from_mapping(raw, display="Pulumi.aws-dev.yaml", env="aws-dev")


def accepts_tags(typ: str) -> bool:
    """Whether the pulumi resource class of a type token takes a `tags` argument."""
    package, module, name = typ.split(":")
    module = module.split("/")[0]
    path = f"pulumi_{package}" if module == "index" else f"pulumi_{package}.{module}"
    cls = getattr(importlib.import_module(path), name)
    return "tags" in inspect.signature(cls._internal_init).parameters


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(SPEC, ROOT, sample_addresses())


@pytest.fixture(scope="module")
def nfs_run() -> ProgramRun:
    spec = with_storage({"kind": "nfs", "mount": "/shared", "export": "/srv/ringfleet"})
    return run_program(spec, ROOT)


@pytest.fixture(scope="module")
def named_nfs_run() -> ProgramRun:
    spec = with_storage({"kind": "nfs", "mount": "/shared", "server": "rf-dev-cpu-1"})
    return run_program(spec, ROOT)


def pool_resources(run: ProgramRun, typ: str, pool: str) -> list:
    return [r for r in run.of_type(typ) if r.inputs["tags"].get(aws_cluster.TAG_POOL) == pool]


def mock_id(reg) -> str:
    return f"{reg.name}-id"


# --- instances per pool -------------------------------------------------------


@pytest.mark.parametrize("pool", POOLS)
def test_one_instance_per_node(run, pool):
    names = sorted(r.name for r in pool_resources(run, INSTANCE, pool))
    assert names == sorted(n.name for n in SPEC.pools[pool].nodes)


@pytest.mark.parametrize("pool", POOLS)
def test_instance_type_is_the_pools(run, pool):
    types = {r.inputs["instanceType"] for r in pool_resources(run, INSTANCE, pool)}
    assert types == {SPEC.pools[pool].pool.instance_type}


@pytest.mark.parametrize("pool", POOLS)
def test_every_pool_runs_the_debian_12_ami(run, pool):
    # GPU pools too: the Debian-pinned roles cannot converge an Ubuntu image.
    assert {r.inputs["ami"] for r in pool_resources(run, INSTANCE, pool)} == {MOCK_DEBIAN_AMI}


def test_ami_lookups_ask_only_for_official_debian_12(run):
    asked = {
        (tuple(c.args["owners"]), v)
        for c in run.calls
        for f in c.args["filters"]
        if f["name"] == "name"
        for v in f["values"]
    }
    assert asked == {((aws_cluster.DEBIAN_AMI_OWNER,), aws_cluster.DEBIAN_AMI_NAME)}


@pytest.mark.parametrize("pool", POOLS)
def test_root_volume_size_is_the_pools(run, pool):
    sizes = {r.inputs["rootBlockDevice"]["volumeSize"] for r in pool_resources(run, INSTANCE, pool)}
    assert sizes == {SPEC.pools[pool].pool.root_volume_gb}


@pytest.mark.parametrize("pool", POOLS)
def test_spot_only_where_the_pool_asks(run, pool):
    markets = [r.inputs.get("instanceMarketOptions") for r in pool_resources(run, INSTANCE, pool)]
    expected = {"spot"} if SPEC.pools[pool].pool.spot else {None}
    assert {m["marketType"] if m else None for m in markets} == expected


@pytest.mark.parametrize("pool", POOLS)
def test_one_cluster_placement_group_per_pool(run, pool):
    groups = pool_resources(run, PLACEMENT_GROUP, pool)
    assert [g.inputs["strategy"] for g in groups] == ["cluster"]


@pytest.mark.parametrize("pool", POOLS)
def test_instances_are_in_their_pools_placement_group(run, pool):
    (group,) = pool_resources(run, PLACEMENT_GROUP, pool)
    placed = {r.inputs["placementGroup"] for r in pool_resources(run, INSTANCE, pool)}
    assert placed == {f"{group.name}-mock"}


@pytest.mark.parametrize("pool", POOLS)
def test_instances_are_in_the_members_security_group(run, pool):
    (sg,) = run.of_type(SECURITY_GROUP)
    groups = {tuple(r.inputs["vpcSecurityGroupIds"]) for r in pool_resources(run, INSTANCE, pool)}
    assert groups == {(mock_id(sg),)}


@pytest.mark.parametrize("pool", POOLS)
def test_user_data_makes_the_inventory_login_user(run, pool):
    for reg in pool_resources(run, INSTANCE, pool):
        users = yaml.safe_load(reg.inputs["userData"])["users"]
        login = [u for u in users if isinstance(u, dict) and u["name"] == aws_cluster.LOGIN_USER]
        assert login[0]["ssh_authorized_keys"] == [MOCK_PUBLIC_KEY], reg.name


@pytest.mark.parametrize("pool", POOLS)
def test_user_data_leaves_host_keys_on_the_console(run, pool):
    # `ringfleet trust` checks scanned host keys against cloud-init's console block.
    docs = [yaml.safe_load(r.inputs["userData"]) for r in pool_resources(run, INSTANCE, pool)]
    assert [d.get("ssh", {}).get("emit_keys_to_console", True) for d in docs] == [True] * len(docs)


@pytest.mark.parametrize("pool", POOLS)
def test_outputs_name_each_nodes_instance(run, pool):
    nodes = run.outputs[out.OUT_POOLS][pool]["nodes"]
    assert {n["name"]: n["instanceId"] for n in nodes} == {
        n.name: mock_instance_id(n.name) for n in SPEC.pools[pool].nodes
    }


@pytest.mark.parametrize("pool", POOLS)
def test_a_newer_ami_does_not_replace_running_nodes(run, pool):
    ignored = {tuple(r.ignore_changes) for r in pool_resources(run, INSTANCE, pool)}
    assert ignored == {("ami",)}


def test_a_newer_ami_does_not_replace_the_nfs_head(nfs_run):
    (head,) = [r for r in nfs_run.of_type(INSTANCE) if r.name.endswith("-nfs")]
    assert head.ignore_changes == ["ami"]


def test_login_user_is_the_inventorys():
    from ringfleet.providers.aws import AWS_LOGIN_USER

    assert aws_cluster.LOGIN_USER == AWS_LOGIN_USER


# --- security group -----------------------------------------------------------


def ingress(run: ProgramRun) -> list[dict]:
    (sg,) = run.of_type(SECURITY_GROUP)
    return sg.inputs["ingress"]


def test_no_ingress_from_anywhere(run):
    assert [r for r in ingress(run) if ANYWHERE & set(r.get("cidrBlocks", []))] == []


def test_the_only_cidr_ingress_is_ssh_from_the_admin_network(run):
    by_cidr = [r for r in ingress(run) if r.get("cidrBlocks")]
    assert [(r["protocol"], r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in by_cidr] == [
        ("tcp", SPEC.cluster.ssh.port, SPEC.cluster.ssh.port, [ADMIN_CIDR])
    ]


def test_members_reach_each_other_through_a_self_referencing_rule(run):
    members = [r for r in ingress(run) if r.get("self")]
    assert [(r["protocol"], r["fromPort"], r["toPort"]) for r in members] == [("-1", 0, 0)]


def test_egress_is_open(run):
    (sg,) = run.of_type(SECURITY_GROUP)
    assert [(e["protocol"], e["cidrBlocks"]) for e in sg.inputs["egress"]] == [
        ("-1", ["0.0.0.0/0"])
    ]


@pulumi.runtime.test
def test_cluster_network_sg_admits_ssh_only_from_admin():
    set_ringfleet_mocks("aws-dev")
    net = aws_cluster.ClusterNetwork(
        "t-net",
        aws_cluster.ClusterNetworkArgs(
            cidr="10.9.0.0/16", admin_cidr="198.51.100.7/32", ssh_port=2222, tags={}
        ),
    )

    def check(rules):
        # Mocked state comes back as plain dicts with the SDK's snake_case names.
        cidr_rules = [(r["from_port"], r["cidr_blocks"]) for r in rules if r.get("cidr_blocks")]
        assert cidr_rules == [(2222, ["198.51.100.7/32"])]

    return pulumi.Output.all(net.security_group.ingress).apply(lambda parts: check(parts[0]))


# --- tags, provider, parents --------------------------------------------------


def test_every_registered_type_is_classified(run):
    custom = {r.typ for r in run.registrations if r.custom and r.typ != PROVIDER}
    assert custom == set(TAGGABLE) | set(UNTAGGABLE)


@pytest.mark.parametrize("typ", TAGGABLE + UNTAGGABLE)
def test_taggable_list_matches_the_provider_schema(typ):
    assert accepts_tags(typ) == (typ in TAGGABLE)


@pytest.mark.parametrize("key", BASE_TAGS)
@pytest.mark.parametrize("typ", TAGGABLE)
def test_every_taggable_resource_carries_the_cluster_tags(run, typ, key):
    expected = {
        aws_cluster.TAG_CLUSTER: SPEC.cluster.name,
        aws_cluster.TAG_ENV: SPEC.env,
        aws_cluster.TAG_MANAGED_BY: aws_cluster.MANAGED_BY,
    }[key]
    assert {r.name: r.inputs["tags"].get(key) for r in run.of_type(typ)} == {
        r.name: expected for r in run.of_type(typ)
    }


@pytest.mark.parametrize("pool", POOLS)
def test_root_volumes_carry_the_pool_tag(run, pool):
    tags = [r.inputs["rootBlockDevice"]["tags"] for r in pool_resources(run, INSTANCE, pool)]
    assert {t[aws_cluster.TAG_POOL] for t in tags} == {pool}


def test_the_provider_is_pinned_to_the_spec_region(run):
    (provider,) = run.of_type(PROVIDER)
    assert provider.inputs["region"] == SPEC.cluster.region


@pytest.mark.parametrize("typ", [t for t in TAGGABLE + UNTAGGABLE if t.startswith("aws:")])
def test_every_aws_resource_uses_the_regional_provider(run, typ):
    (provider,) = run.of_type(PROVIDER)
    assert {r.provider.split("::")[-2] for r in run.of_type(typ)} == {provider.name}


def test_ami_lookups_use_the_regional_provider(run):
    (provider,) = run.of_type(PROVIDER)
    assert {c.provider.split("::")[-2] for c in run.calls} == {provider.name}


@pytest.mark.parametrize("typ", TAGGABLE + UNTAGGABLE)
def test_every_resource_is_a_child_of_a_component(run, typ):
    parents = {run.by_urn(r.parent).typ for r in run.of_type(typ)}
    assert all(p.startswith("ringfleet:aws:") for p in parents), parents


# --- storage and protection ---------------------------------------------------


def test_stateful_opts_protect():
    parent = object()
    opts = stateful_opts(parent)  # type: ignore[arg-type]
    assert (opts.protect, opts.parent) == (True, parent)


def test_efs_is_protected(run):
    assert [r.protect for r in run.of_type(FILE_SYSTEM)] == [True]


def test_only_stateful_resources_are_protected(run):
    assert {r.typ for r in run.registrations if r.protect} == {FILE_SYSTEM}


def test_efs_is_encrypted(run):
    assert [r.inputs["encrypted"] for r in run.of_type(FILE_SYSTEM)] == [True]


def test_one_mount_target_per_subnet(run):
    subnets = sorted(mock_id(s) for s in run.of_type(SUBNET))
    assert sorted(m.inputs["subnetId"] for m in run.of_type(MOUNT_TARGET)) == subnets


def test_efs_storage_server_is_its_dns_name(run):
    assert run.outputs[out.OUT_STORAGE]["server"] == MOCK_EFS_DNS


def test_nfs_head_node_is_protected(nfs_run):
    heads = [r for r in nfs_run.of_type(INSTANCE) if r.name.endswith("-nfs")]
    assert [h.protect for h in heads] == [True]


def test_nfs_head_node_keeps_its_volume(nfs_run):
    (head,) = [r for r in nfs_run.of_type(INSTANCE) if r.name.endswith("-nfs")]
    assert head.inputs["rootBlockDevice"]["deleteOnTermination"] is False


def test_nfs_head_exports_to_the_vpc_only(nfs_run):
    (head,) = [r for r in nfs_run.of_type(INSTANCE) if r.name.endswith("-nfs")]
    (exports,) = yaml.safe_load(head.inputs["userData"])["write_files"]
    assert exports["content"].split()[1].startswith(SPEC.cluster.network.subnet + "(")


def test_nfs_storage_server_is_the_head_nodes_address(nfs_run):
    (head,) = [r for r in nfs_run.of_type(INSTANCE) if r.name.endswith("-nfs")]
    assert nfs_run.outputs[out.OUT_STORAGE]["server"] == nfs_run.addresses[head.name]["privateIp"]


def test_nfs_makes_no_efs(nfs_run):
    assert nfs_run.of_type(FILE_SYSTEM) == []


def test_named_nfs_server_makes_no_head_node(named_nfs_run):
    assert [r.name for r in named_nfs_run.of_type(INSTANCE) if r.name.endswith("-nfs")] == []


def test_named_nfs_server_is_exported_as_named(named_nfs_run):
    assert named_nfs_run.outputs[out.OUT_STORAGE]["server"] == "rf-dev-cpu-1"


# --- outputs ------------------------------------------------------------------


def test_exports_exactly_the_shared_keys_and_the_key(run):
    assert set(run.outputs) == {*out.REQUIRED_KEYS, out.OUT_SSH_PRIVATE_KEY}


def test_private_key_is_exported_as_a_secret(run):
    assert out.OUT_SSH_PRIVATE_KEY in run.secret_keys


def test_private_key_export_is_the_generated_key(run):
    assert run.outputs[out.OUT_SSH_PRIVATE_KEY] == MOCK_PRIVATE_KEY


@pytest.mark.parametrize("key", out.REQUIRED_KEYS)
def test_inventory_outputs_are_not_secret(run, key):
    # The inventory reads them from `pulumi stack output --json`, which masks secrets.
    assert key not in run.secret_keys


@pytest.mark.parametrize("key", out.REQUIRED_KEYS)
def test_private_key_appears_in_no_other_output(run, key):
    assert MOCK_PRIVATE_KEY not in json.dumps(run.outputs[key])


def test_private_key_appears_in_no_resource_input(run):
    leaked = [r.name for r in run.registrations if MOCK_PRIVATE_KEY in json.dumps(r.inputs)]
    assert leaked == []


@pytest.mark.parametrize("key", out.REQUIRED_KEYS)
def test_outputs_equal_the_sample(run, key):
    assert run.outputs[key] == sample()[key]


def test_sample_masks_the_private_key():
    assert sample()[out.OUT_SSH_PRIVATE_KEY] == "[secret]"


# --- a component on its own ---------------------------------------------------


@pytest.mark.parametrize("pool", POOLS)
@pulumi.runtime.test
def test_node_pool_component_instance_types(pool):
    set_ringfleet_mocks("aws-dev")
    rp = SPEC.pools[pool]
    node_pool = aws_cluster.NodePool(
        f"t-{pool}",
        aws_cluster.NodePoolArgs(
            pool=rp,
            tags=aws_cluster.cluster_tags(SPEC, pool=pool),
            subnet_id="subnet-1",
            security_group_id="sg-1",
            key_name="key-1",
            user_data="#cloud-config\n",
        ),
    )

    def check(types):
        assert types == [rp.pool.instance_type] * len(rp.nodes)

    return pulumi.Output.all(*[i.instance_type for i in node_pool.instances.values()]).apply(check)
