"""Host keys of aws instances: cloud-init's console block parsed, scanned keys vouched for.

The console sample (tests/data/aws/console-debian12.txt) is in the format a Debian 12
instance's serial console shows it (cloud-init 22.4, CRLF line ends, syslog-tagged
fingerprints, a kernel message inside the key block); its keys were made with
ssh-keygen and are in console-debian12.keys as ssh-keygen wrote them. No AWS call is
made: the GetConsoleOutput request is checked against botocore's EC2 model (Stubber).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.nodes import trust as trustmod
from ringfleet.nodes.trust import HostKey, trust_hosts
from ringfleet.providers.aws.hostkeys import (
    BEGIN,
    END,
    Instance,
    console_host_keys,
    console_reader,
    vouch,
)
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "aws"
CONSOLE = (DATA / "console-debian12.txt").read_bytes().decode()
INSTANCE = Instance("rf-dev-cpu-1", "i-0123456789abcdef0")
ADDRESS = "192.0.2.11"
TRUST = "ringfleet trust aws-dev"


def pub_keys(name: str) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in (DATA / name).read_text().splitlines()]


EXPECTED = pub_keys("console-debian12.keys")
OTHER = pub_keys("other-host-key.pub")[0]


def scanned(*pairs: tuple[str, str]) -> list[HostKey]:
    return [HostKey(INSTANCE.name, ADDRESS, 22, kind, key) for kind, key in pairs]


def check(keys: list[HostKey], console: str = CONSOLE) -> None:
    vouch(keys, {INSTANCE.name: INSTANCE}, lambda _id: console, TRUST)


# --- the console block ------------------------------------------------------------------


def test_sample_has_crlf_line_ends_as_a_serial_console_does():
    assert "\r\n" + BEGIN + "\r\n" in CONSOLE


def test_parser_reads_every_host_key_of_the_block():
    assert console_host_keys(CONSOLE) == set(EXPECTED)


@pytest.mark.parametrize("kind", sorted({k for k, _ in EXPECTED}))
def test_fingerprint_matches_the_one_cloud_init_printed(kind):
    """Our SHA256 fingerprint of each key equals the line ssh-keygen -l made on the host."""
    (key,) = [k for k in scanned(*EXPECTED) if k.kind == kind]
    printed = re.findall(r"cloud-init: \d+ (SHA256:\S+) \S+ \((\w+)\)", CONSOLE)
    label = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ecdsa-sha2-nistp256": "ECDSA"}[kind]
    assert (key.fingerprint, label) in printed


def test_no_block_yet_is_no_keys():
    assert console_host_keys(CONSOLE.split(BEGIN)[0]) == set()


def test_a_key_line_cut_by_console_noise_is_not_a_key():
    kind, key = EXPECTED[1]
    cut = f"{BEGIN}\n{kind} {key[:20]}[   11.4] random: crng init done\n{END}\n"
    assert console_host_keys(cut) == set()


def test_blocks_that_disagree_are_refused():
    second = f"\n{BEGIN}\n{OTHER[0]} {OTHER[1]} root@x\n{END}\n"
    with pytest.raises(RingfleetError, match="host key blocks that disagree"):
        console_host_keys(CONSOLE + second)


# --- vouching for scanned keys ------------------------------------------------------------


def test_scanned_keys_in_the_console_pass():
    check(scanned(*EXPECTED))  # raises on any key the console does not vouch for
    assert True


def test_a_scanned_key_not_in_the_console_is_one_line_naming_the_instance():
    (stranger,) = scanned(OTHER)
    with pytest.raises(RingfleetError) as refused:
        check(scanned(*EXPECTED[:1], OTHER))
    assert refused.value.line() == (
        f"ringfleet: error: rf-dev-cpu-1 (i-0123456789abcdef0): host key ssh-ed25519 "
        f"{stranger.fingerprint} offered at {ADDRESS} is not in the instance's console "
        "output; nothing written"
    )


def test_no_block_in_the_console_yet_says_retry():
    with pytest.raises(RingfleetError, match=r"no SSH host keys in its console output yet.*"
                       r"retry `ringfleet trust aws-dev`"):  # fmt: skip
        check(scanned(*EXPECTED), console="[    7.9] cloud-init[412]: running 'init-local'\n")


def test_a_mismatch_writes_no_known_hosts(tmp_path: Path, monkeypatch):
    """The scan's result is the input here (no sshd on this machine); the check and the
    file are real."""
    known = tmp_path / "known_hosts"
    monkeypatch.setattr(trustmod, "scan_host_keys", lambda hosts: scanned(OTHER))
    with pytest.raises(RingfleetError, match="not in the instance's console output"):
        trust_hosts([(INSTANCE.name, ADDRESS, 22)], known, lambda: True, vouch=check)
    assert not known.exists()


# --- the GetConsoleOutput request ---------------------------------------------------------


@pytest.fixture
def stubbed():
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    client = boto3.client(
        "ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        yield client, stub


def test_console_is_asked_for_the_latest_output_which_botocore_decodes(stubbed):
    client, stub = stubbed
    encoded = base64.b64encode(CONSOLE.encode()).decode()
    stub.add_response(
        "get_console_output",
        {"InstanceId": INSTANCE.instance_id, "Output": encoded},
        {"InstanceId": INSTANCE.instance_id, "Latest": True},
    )
    assert console_reader(client)(INSTANCE.instance_id) == CONSOLE


def test_an_api_refusal_is_one_line_naming_the_call(stubbed):
    client, stub = stubbed
    stub.add_client_error(
        "get_console_output",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
    )
    with pytest.raises(RingfleetError) as refused:
        console_reader(client)(INSTANCE.instance_id)
    assert refused.value.line() == (
        "ringfleet: error: ec2 get-console-output i-0123456789abcdef0: You are not authorized "
        "to perform this operation. (got 'UnauthorizedOperation')"
    )
