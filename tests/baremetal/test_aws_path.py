"""The aws provider's node path on one simulated instance: trust vouched by a console block,
then SshNodes as `admin` with the stack key, as `run`, `status`, `verify` and `lock` use them.

The host is a bare host of the fixture with the admin account `admin`, as cloud-init
makes it on the Debian AMI; the project holds what `ringfleet up aws-dev` leaves
behind (the saved outputs with the node's address and instance id, the stack key).
Only the console output is not EC2's: it is the block cloud-init prints, made from the
host's own public key files (where cloud-init reads them), handed to the provider's
voucher in place of boto3's reader. ssh-keyscan, known_hosts and SSH are real.

Run it under the Docker lock: `flock /tmp/rf-docker.lock .venv/bin/pytest
tests/baremetal/test_aws_path.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ringfleet import paths
from ringfleet.errors import RingfleetError
from ringfleet.nodes import RUNNING
from ringfleet.nodes.trust import trust_hosts
from ringfleet.providers import for_spec
from ringfleet.providers.aws.hostkeys import BEGIN, END
from ringfleet.providers.sshreach import known_hosts_file
from ringfleet.spec import load_spec
from ringfleet.state import write_outputs, write_stack_key
from tests.baremetal.conftest import CLUSTER_SUBNET
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

ENV = "aws-sim"
NODE = "rf-sim-cpu-1"
INSTANCE_ID = "i-0a1b2c3d4e5f60718"
OTHER_KEY = (ROOT / "tests" / "data" / "aws" / "other-host-key.pub").read_text().split()[:2]


def console_block(keys: list[tuple[str, str]]) -> str:
    """What cloud-init's keys-to-console prints on the serial console (CRLF)."""
    lines = ["[    9.4] cloud-init[455]: Cloud-init v. 22.4.2 running 'modules:final'", BEGIN]
    lines += [f"{kind} {key} root@{NODE}" for kind, key in keys]
    return "\r\n".join([*lines, END, ""])


@pytest.fixture(scope="module")
def instance(bare_metal):
    return bare_metal.host("aws1", admin="admin")


@pytest.fixture(scope="module")
def project(tmp_path_factory, instance, admin_key) -> Path:
    """A project as `ringfleet up aws-sim --no-converge` would leave it."""
    root = tmp_path_factory.mktemp("aws-sim")
    cluster = {
        "name": "rf-sim",
        "provider": "aws",
        "region": "eu-west-1",
        "pools": [{"name": "cpu", "count": 1, "instance_type": "c7i.xlarge"}],
        "storage": {"kind": "efs", "mount": "/shared"},
        "network": {"subnet": CLUSTER_SUBNET, "admin_cidr": CLUSTER_SUBNET},
    }
    (root / f"Pulumi.{ENV}.yaml").write_text(
        yaml.safe_dump({"config": {"ringfleet:cluster": cluster}})
    )
    from ringfleet.providers.outputs import static_outputs

    spec = load_spec(ENV, root)
    address = {"privateIp": instance.address, "publicIp": None, "instanceId": INSTANCE_ID}
    write_outputs(root, ENV, static_outputs(spec, {NODE: address}))
    write_stack_key(root, ENV, admin_key.private.read_text())
    return root


def trust(project: Path, console: str) -> bool:
    """`ringfleet trust aws-sim --yes` as the CLI runs it, with `console` as EC2's answer."""
    spec = load_spec(ENV, project)
    provider = for_spec(spec)
    hosts = [(t.name, t.address, 22) for t in provider.trust_targets()]
    voucher = provider.host_key_voucher(lambda _instance_id: console)
    return trust_hosts(hosts, known_hosts_file(spec), lambda: True, lambda _: None, voucher).written


def test_a_console_without_the_scanned_keys_writes_nothing(project, instance) -> None:
    with pytest.raises(RingfleetError, match=rf"^ringfleet: error: {NODE} \({INSTANCE_ID}\): "):
        trust(project, console_block([tuple(OTHER_KEY)]))
    assert not paths.known_hosts_path(project, ENV).exists()


def test_a_console_with_the_scanned_keys_is_trusted(project, instance, bare_metal) -> None:
    assert trust(project, console_block(bare_metal.host_keys(instance)))


def test_known_hosts_holds_the_instances_keys(project, instance, bare_metal) -> None:
    written = paths.known_hosts_path(project, ENV).read_text().splitlines()
    assert sorted(written) == sorted(bare_metal.known_hosts_lines(instance).splitlines())


def test_status_reaches_the_instance_over_ssh(project, instance) -> None:
    (row,) = for_spec(load_spec(ENV, project)).status()
    seen = (row.name, row.state, row.ip, row.image)
    assert seen == (NODE, RUNNING, instance.address, INSTANCE_ID)


def test_commands_run_as_root_through_admins_sudo(project) -> None:
    node = for_spec(load_spec(ENV, project)).nodes()[NODE]
    assert node.output(["id", "-un"]).strip() == "root"
