"""No secret on disk in the clear: stack outputs, the stack's login key, the cluster key."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from pulumi import automation as auto

from ringfleet.errors import RingfleetError
from ringfleet.providers import UpOptions, for_spec, stackops
from ringfleet.providers import outputs as out
from ringfleet.spec import load_spec
from ringfleet.state import (
    KEY_NAME,
    OUTPUTS_NAME,
    STACK_KEY_NAME,
    STATE_DIRNAME,
    cluster_keypair,
    controller_keypair,
    converge_vars,
)
from tests.conftest import ROOT

# What `pulumi stack output --json` gives for aws-dev, minus the secret.
SAMPLE = ROOT / "tests" / "data" / "outputs-aws-dev.json"
SECRET_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "c2VjcmV0LWtleS1ib2R5LXRoYXQtbXVzdC1uZXZlci1sZWFr\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
# A line of the key body: found in any file that holds the key in whatever encoding of JSON.
SECRET_MARK = "c2VjcmV0LWtleS1ib2R5LXRoYXQtbXVzdC1uZXZlci1sZWFr"


class FakeStack:
    """Stands in for auto.Stack: `up` returns what the Automation API returns."""

    def __init__(self, outputs: dict[str, auto.OutputValue]):
        self._outputs = outputs

    def up(self, on_output=None) -> auto.UpResult:
        return auto.UpResult(stdout="", stderr="", summary=None, outputs=self._outputs)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project root holding the aws-dev spec, used by the CLI through RINGFLEET_ROOT."""
    shutil.copy(ROOT / "Pulumi.aws-dev.yaml", tmp_path / "Pulumi.aws-dev.yaml")
    monkeypatch.setenv("RINGFLEET_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def upped(project, monkeypatch) -> Path:
    """`ringfleet up aws-dev --no-converge` through the real stack_up and state code."""
    spec = load_spec("aws-dev", project)
    plain = json.loads(SAMPLE.read_text(encoding="utf-8"))
    plain.pop(out.OUT_SSH_PRIVATE_KEY, None)
    outputs = {k: auto.OutputValue(v, secret=False) for k, v in plain.items()}
    outputs[out.OUT_SSH_PRIVATE_KEY] = auto.OutputValue(SECRET_KEY, secret=True)
    monkeypatch.setattr(stackops, "_stack", lambda env, root=None: FakeStack(outputs))
    for_spec(spec).up(project, UpOptions(converge=False, say=lambda line: None))
    return project


def _state_files(root: Path) -> list[Path]:
    return sorted(
        p for d in (STATE_DIRNAME, "inventories") for p in (root / d).rglob("*") if p.is_file()
    )


def _key_file(root: Path) -> Path:
    return root / STATE_DIRNAME / "aws-dev" / "ssh" / STACK_KEY_NAME


def test_up_writes_state_files(upped):
    assert _state_files(upped)


def test_no_state_file_but_the_key_file_holds_the_secret(upped):
    holding = [p for p in _state_files(upped) if SECRET_MARK in p.read_text(errors="replace")]
    assert holding == [_key_file(upped)]


def test_outputs_file_has_no_secret_key(upped):
    saved = json.loads((upped / STATE_DIRNAME / "aws-dev" / OUTPUTS_NAME).read_text())
    assert out.OUT_SSH_PRIVATE_KEY not in saved


def test_stack_key_is_written_whole(upped):
    assert _key_file(upped).read_text() == SECRET_KEY


def test_every_state_file_is_owner_only(upped):
    modes = {
        str(p.relative_to(upped)): stat.S_IMODE(p.stat().st_mode)
        for p in _state_files(upped)
        if not p.name.endswith(".pub")
    }
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}


@pytest.mark.parametrize("sub", ["", "aws-dev", "aws-dev/ssh"])
def test_state_directories_are_owner_only(upped, sub):
    path = upped / STATE_DIRNAME / sub
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_converge_uses_the_stack_key_to_log_in(upped):
    assert converge_vars(upped, "aws-dev")["ansible_ssh_private_key_file"] == str(
        _key_file(upped)
    )


def test_stack_outputs_leave_secrets_out(project, monkeypatch):
    class Outputs(FakeStack):
        def outputs(self):
            return self._outputs

    values = {
        "env": auto.OutputValue("aws-dev", secret=False),
        out.OUT_SSH_PRIVATE_KEY: auto.OutputValue(SECRET_KEY, secret=True),
    }
    monkeypatch.setattr(stackops, "_stack", lambda env, root=None: Outputs(values))
    assert stackops.stack_outputs("aws-dev") == {"env": "aws-dev"}


# --- the cluster key -----------------------------------------------------------


def test_missing_pub_is_rebuilt_from_the_private_key(tmp_path):
    private, public = cluster_keypair(tmp_path, "e")
    before_private, before_public = private.read_bytes(), public.read_bytes()
    public.unlink()
    cluster_keypair(tmp_path, "e")
    assert (private.read_bytes(), public.read_bytes()) == (before_private, before_public)


def test_private_key_open_to_others_is_refused(tmp_path):
    private, _ = cluster_keypair(tmp_path, "e")
    private.chmod(0o644)
    with pytest.raises(RingfleetError) as caught:
        cluster_keypair(tmp_path, "e")
    assert caught.value.line() == (
        f"ringfleet: error: .ringfleet/e/ssh/{KEY_NAME}: private key is open to other users "
        f"(mode 0644); run `chmod 600 {private}` if it never left this machine, else replace it"
    )


def test_cluster_private_key_is_owner_only(tmp_path):
    private, _ = cluster_keypair(tmp_path, "e")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


# --- the controller's root login key for local nodes ------------------------------


def test_controller_key_is_owner_only(tmp_path):
    private, _ = controller_keypair(tmp_path, "e")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_controller_key_directory_is_owner_only(tmp_path):
    private, _ = controller_keypair(tmp_path, "e")
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700


def test_controller_key_is_made_once(tmp_path):
    first = controller_keypair(tmp_path, "e")[0].read_bytes()
    assert controller_keypair(tmp_path, "e")[0].read_bytes() == first


def test_controller_key_is_not_the_cluster_key(tmp_path):
    # Every node holds the cluster key; root's login must need another.
    assert (
        controller_keypair(tmp_path, "e")[1].read_text().split()[1]
        != cluster_keypair(tmp_path, "e")[1].read_text().split()[1]
    )
