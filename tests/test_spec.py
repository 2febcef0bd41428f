"""The cluster spec: examples validate, derived values are right, broken specs fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ringfleet.compat import DEFAULT_PROFILE, PROFILES
from ringfleet.errors import RingfleetError
from ringfleet.spec import load_spec
from ringfleet.yamlio import read_yaml
from tests.conftest import ROOT, run_cli

CORPUS = ROOT / "tests" / "data" / "specs"

# env -> the exact one-line error a user sees.
BROKEN = {
    "yaml-syntax": "Pulumi.yaml-syntax.yaml:5:7: invalid YAML: expected the node content, "
    "but found '-'",
    "empty": "Pulumi.empty.yaml: file is empty; expected config.ringfleet:cluster",
    "no-config": "Pulumi.no-config.yaml: config: required mapping of Pulumi config",
    "no-cluster-key": "Pulumi.no-cluster-key.yaml: config.ringfleet:cluster: required: "
    "the cluster spec",
    "not-mapping": "Pulumi.not-mapping.yaml: top level must be a mapping with a config key "
    "(got ['just', 'a list'])",
    "negative-count": "Pulumi.negative-count.yaml: cluster.pools[1].count: must be >= 0 (got -2)",
    "count-string": "Pulumi.count-string.yaml: cluster.pools[0].count: must be an integer "
    "(got '3')",
    "unknown-key": "Pulumi.unknown-key.yaml: cluster.pools[0].cpu: unknown key; "
    "did you mean 'cpus'?",
    "unknown-top-key": "Pulumi.unknown-top-key.yaml: cluster.pool: unknown key; "
    "did you mean 'pools'?",
    "duplicate-pool": "Pulumi.duplicate-pool.yaml: cluster.pools[1].name: duplicate pool name "
    "(also cluster.pools[0]) (got 'cpu')",
    "duplicate-key": "Pulumi.duplicate-key.yaml:4:5: invalid YAML: duplicate key 'name'",
    "gpu-instance-without-gpus": "Pulumi.gpu-instance-without-gpus.yaml: "
    "cluster.pools[0].instance_type: instance type has no GPUs but the pool has an accelerator "
    "(got 'c7i.4xlarge')",
    "gpu-no-interface": "Pulumi.gpu-no-interface.yaml: cluster.network.interface: required "
    "with a GPU pool (cluster.pools[0]) on provider aws: NCCL needs the nodes' cluster interface "
    "by name (e.g. ens5 on EC2 Nitro, eno1)",
    "gpu-vendor": "Pulumi.gpu-vendor.yaml: cluster.pools[0].accelerator.vendor: "
    "must be one of 'nvidia' (got 'amd')",
    "zero-slots": "Pulumi.zero-slots.yaml: cluster.pools: zero total slots: no pool has a node "
    "with a slot, so no job could run",
    "tf-216-horovod": "Pulumi.tf-216-horovod.yaml: cluster.software.tensorflow: tensorflow 2.16.1 "
    "with horovod 0.28.1 is not supported: Horovod 0.28.1 needs ringfleet's patch for "
    "TF >= 2.16 (Keras 3 and XLA header changes), tested with 2.21.0 only; "
    "tested: tf2.15, tf2.21 (got '2.16.1')",
    "tf221-gpu": "Pulumi.tf221-gpu.yaml: cluster.pools[0].software.profile: profile tf2.21 is "
    "tested on CPU pools only (its Horovod build drops the XLA ops GPU builds need); "
    "GPU pools: tf2.15 (got 'tf2.21')",
    "untested-openmpi": "Pulumi.untested-openmpi.yaml: cluster.software.openmpi: untested openmpi "
    "version; tested: 4.1.4 (profiles: tf2.15, tf2.21) (got '5.0.3')",
    "unknown-profile": "Pulumi.unknown-profile.yaml: cluster.software.profile: unknown software "
    "profile; tested: tf2.15, tf2.21, or one of your own in profiles/<name>.yaml (got 'tf9.99')",
    "bad-provider": "Pulumi.bad-provider.yaml: cluster.provider: must be one of 'docker', 'aws' "
    "or 'static' (got 'gcp')",
    "bad-name": "Pulumi.bad-name.yaml: cluster.name: must be lowercase letters, digits and "
    "dashes, starting with a letter, at most 31 characters (got 'RF_Bad')",
    "aws-no-region": "Pulumi.aws-no-region.yaml: cluster.region: required for provider aws",
    "world-ssh": "Pulumi.world-ssh.yaml: cluster.network.admin_cidr: SSH would be open to the "
    "whole internet; name your admin network (got '0.0.0.0/0')",
    "bad-subnet": "Pulumi.bad-subnet.yaml: cluster.network.subnet: not a CIDR network: "
    "10.213.0.1/24 has host bits set (got '10.213.0.1/24')",
    "storage-kind": "Pulumi.storage-kind.yaml: cluster.storage.kind: provider docker supports "
    "volume (got 'efs')",
    "docker-missing-memory": "Pulumi.docker-missing-memory.yaml: cluster.pools[0].memory: "
    "required: the memory limit of each container",
    "static-count-mismatch": "Pulumi.static-count-mismatch.yaml: cluster.pools[0].count: "
    "does not match the 2 host(s) listed (got 3)",
    "threads-exceed-cores": "Pulumi.threads-exceed-cores.yaml: cluster.pools[0].threads_per_rank: "
    "more threads per rank than the node has cores (2) (got 4)",
    "pools-not-list": "Pulumi.pools-not-list.yaml: cluster.pools: must be a list "
    "(got {'name': 'cpu'})",
    "missing-storage": "Pulumi.missing-storage.yaml: cluster.storage: required",
    "static-bad-address": "Pulumi.static-bad-address.yaml: cluster.pools[0].hosts[1].address: "
    "must be an IPv4 or IPv6 address or an RFC 1123 host name (got '192.0.2.12 *')",
    "static-no-admin": "Pulumi.static-no-admin.yaml: cluster.ssh.admin_user: required for static "
    "clusters: the account ringfleet logs in as (root, or a user with passwordless sudo)",
    "static-existing-server": "Pulumi.static-existing-server.yaml: cluster.storage.server: not "
    "used by storage kind existing: the site's file system is already mounted (got 'n1')",
    "static-bad-proxy-jump": "Pulumi.static-bad-proxy-jump.yaml: cluster.ssh.proxy_jump: must be "
    "[user@]host[:port] (got 'ops@bastion 22')",
    "docker-admin-user": "Pulumi.docker-admin-user.yaml: cluster.ssh.admin_user: not used by "
    "provider docker (got 'ops')",
    "aws-key-file": "Pulumi.aws-key-file.yaml: cluster.ssh.key_file: not used by provider aws "
    "(got '~/.ssh/id_ed25519')",
    "slurm-bad-controller": "Pulumi.slurm-bad-controller.yaml: cluster.slurm.controller: no such "
    "node (nodes: rf-bad-cpu-1, rf-bad-cpu-2) (got 'rf-bad-cpu-9')",
    "slurm-without-scheduler": "Pulumi.slurm-without-scheduler.yaml: cluster.slurm: only with "
    "cluster.scheduler: slurm (got 'none')",
    "slurm-bad-scheduler": "Pulumi.slurm-bad-scheduler.yaml: cluster.scheduler: must be one of "
    "'none' or 'slurm' (got 'pbs')",
    "missing-file": "Pulumi.missing-file.yaml: no such file (env 'missing-file'; known envs: "
    + ", ".join(sorted(p.name[7:-5] for p in CORPUS.glob("Pulumi.*.yaml")))
    + ")",
}


def test_corpus_is_complete() -> None:
    on_disk = {p.name[len("Pulumi.") : -len(".yaml")] for p in CORPUS.glob("Pulumi.*.yaml")}
    assert on_disk == set(BROKEN) - {"missing-file"}


@pytest.mark.parametrize("env", sorted(BROKEN))
def test_broken_spec_error_line(env: str) -> None:
    with pytest.raises(RingfleetError) as info:
        load_spec(env, CORPUS)
    assert info.value.line() == f"ringfleet: error: {BROKEN[env]}"


@pytest.mark.parametrize("env", sorted(BROKEN))
def test_broken_spec_cli_exits_2_with_one_line(env: str) -> None:
    proc = run_cli("validate", env, root=CORPUS)
    assert (proc.returncode, proc.stderr.strip().splitlines(), proc.stdout) == (
        2,
        [f"ringfleet: error: {BROKEN[env]}"],
        "",
    )


@pytest.mark.parametrize("env", ["local", "aws-dev", "onprem"])
def test_example_env_validates(env: str) -> None:
    proc = run_cli("validate", env)
    assert proc.returncode == 0, proc.stderr


# (env, pool) -> (cores, slots per node, nodes)
DERIVED = {
    ("local", "cpu"): (2, 2, 3),
    ("local", "gpu"): (4, 1, 0),
    ("aws-dev", "cpu"): (8, 4, 4),
    ("aws-dev", "gpu"): (24, 4, 2),
    ("onprem", "gpu"): (32, 8, 2),
}


@pytest.mark.parametrize(("env", "pool"), sorted(DERIVED))
def test_pool_derived_values(env: str, pool: str) -> None:
    p = load_spec(env, ROOT).pool(pool)
    assert (p.cores, p.slots, len(p.nodes)) == DERIVED[(env, pool)]


def test_local_node_names() -> None:
    names = [n.name for n in load_spec("local", ROOT).nodes]
    assert names == ["rf-local-cpu-1", "rf-local-cpu-2", "rf-local-cpu-3"]


def test_default_profile_is_the_tested_matrix() -> None:
    profile = load_spec("local", ROOT).pool("cpu").profile
    assert profile.versions() == {
        "os": "debian-bookworm",
        "python": "3.11",
        "openmpi": "4.1.4",
        "tensorflow": "2.15.1",
        "horovod": "0.28.1",
        "mkl": "2024.2.2",
    }


def tf221_pool_spec(tmp_path: Path, software: dict) -> Path:
    doc = read_yaml(ROOT / "Pulumi.local.yaml")
    cluster = doc["config"]["ringfleet:cluster"]
    cluster["pools"][0]["software"] = software
    (tmp_path / "Pulumi.tf221.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    "software",
    [{"profile": "tf2.21"}, {"tensorflow": "2.21.0"}],
    ids=["by-profile", "by-tensorflow"],
)
def test_pool_selects_the_tf221_profile(tmp_path: Path, software: dict) -> None:
    spec = load_spec("tf221", tf221_pool_spec(tmp_path, software))
    assert (spec.pool("cpu").profile.name, spec.pool("gpu").profile.name) == ("tf2.21", "tf2.15")


def test_tf221_profile_has_tf_keras() -> None:
    (profile,) = [p for p in PROFILES if p.name == "tf2.21"]
    assert (profile.tensorflow_package, profile.tensorflow, profile.legacy_keras) == (
        "tensorflow",
        "2.21.0",
        "2.21.0",
    )


def test_default_profile_is_still_tf215() -> None:
    assert DEFAULT_PROFILE.name == "tf2.15"


def test_spec_hash_is_stable_across_reads() -> None:
    assert load_spec("local", ROOT).spec_hash == load_spec("local", ROOT).spec_hash


def test_pulumi_cli_value_wrapper_is_accepted(tmp_path: Path) -> None:
    # `pulumi config set --path` writes structured values under `value:`.
    text = (ROOT / "Pulumi.local.yaml").read_text()
    wrapped = text.replace("  ringfleet:cluster:\n", "  ringfleet:cluster:\n    value:\n", 1)
    body = wrapped.split("    value:\n", 1)
    indented = body[0] + "    value:\n" + "".join(
        "  " + line if line.strip() else line for line in body[1].splitlines(keepends=True)
    )
    (tmp_path / "Pulumi.wrapped.yaml").write_text(indented)
    assert load_spec("wrapped", tmp_path).cluster.name == "rf-local"
