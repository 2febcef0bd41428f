"""Spec and job values that reach shell, hostfiles, YAML and comments stay data.

Control characters are refused at load with a one-line error; everything else
(shell metacharacters, quotes) is rendered into all four formats, and the launch
and sbatch scripts are executed with the launchers stubbed to prove nothing else runs.
"""

from __future__ import annotations

import copy
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from ringfleet.errors import RingfleetError
from ringfleet.jobs.render import render_job, slurm_command
from ringfleet.jobs.spec import load_job
from ringfleet.spec import cluster_from_mapping, load_spec, load_spec_file
from ringfleet.yamlio import read_yaml
from tests.conftest import ROOT, run_cli

LOCAL = read_yaml(ROOT / "Pulumi.local.yaml")
CONTROL_LINE = "must not contain control characters (newline, carriage return, tab, NUL, ...)"
# Every line of these, if it ran as shell, would leave a file named pwned* behind.
HOSTILE = [
    "$(touch pwned-subst)",
    "`touch pwned-backtick`",
    "; touch pwned-semicolon",
    "' ; touch pwned-quote ; '",
    '" ; touch pwned-dquote ; "',
    "&& touch pwned-and #",
    "| touch pwned-pipe",
]
HOSTILE_FILE_NAME = "evil\n$(touch pwned-name)\nnode9 slots=99\n---\nkind: Pod\n.yaml"
HOSTILE_DISPLAY = "Pulumi.x\ntouch pwned-spec\n.yaml"


def _spec_doc(**network) -> dict:
    doc = copy.deepcopy(LOCAL)
    doc["config"]["ringfleet:cluster"]["network"].update(network)
    return doc


def _write_spec(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _cluster(doc: dict) -> dict:
    return doc["config"]["ringfleet:cluster"]


# --- control characters in specs ----------------------------------------------------------

SPEC_FIELDS = {
    "cluster.name": lambda c: c.update(name="rf\nx"),
    "cluster.pools[0].labels.tier": lambda c: c["pools"][0]["labels"].update(tier="a\rb"),
    "cluster.pools[0].labels.t\x00ier": lambda c: c["pools"][0]["labels"].update({"t\x00ier": "a"}),
    "cluster.pools[0].image": lambda c: c["pools"][0].update(image="img\n; rm -rf /"),
    "cluster.storage.mount": lambda c: c["storage"].update(mount="/shared\n"),
    "cluster.network.interface": lambda c: c["network"].update(interface="eth0\nid"),
    "cluster.ssh.user": lambda c: c["ssh"].update(user="rf\t"),
    "cluster.software.profile": lambda c: c["software"].update(profile="tf2.15\x1b"),
}


@pytest.mark.parametrize("field", SPEC_FIELDS)
def test_control_character_in_spec_is_one_line_naming_the_field(tmp_path, field):
    doc = copy.deepcopy(LOCAL)
    SPEC_FIELDS[field](_cluster(doc))
    with pytest.raises(RingfleetError) as caught:
        load_spec_file(_write_spec(tmp_path, doc), "t")
    line = caught.value.line()
    expected_where = field.replace("\x00", "\\x00")
    assert (line.startswith(f"ringfleet: error: Pulumi.t.yaml: {expected_where}: {CONTROL_LINE}")
            and "\n" not in line)  # fmt: skip


def test_control_character_in_spec_exits_2_with_one_line(tmp_path):
    doc = copy.deepcopy(LOCAL)
    _cluster(doc)["pools"][0]["labels"]["tier"] = "a\nb"
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = run_cli("validate", "t", root=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)


# --- control characters in jobs -----------------------------------------------------------

JOB = {"name": "probe", "pool": "cpu", "processes": 2, "entry": {"script": "train.py"}}
JOB_FIELDS = {
    "job.entry.args[1]": lambda j: j["entry"].update(args=["ok", "x\ntouch pwned"]),
    "job.entry.script": lambda j: j["entry"].update(script="train.py\n"),
    "job.env.OPT": lambda j: j.update(env={"OPT": "1\n2"}),
    "job.env.O\nPT": lambda j: j.update(env={"O\nPT": "1"}),
    "job.workdir": lambda j: j.update(workdir="/shared/x\r"),
    "job.interface": lambda j: j.update(interface="eth0\n"),
    "job.pool": lambda j: j.update(pool="cpu\x00"),
    "job.name": lambda j: j.update(name="probe\x7f"),
}


@pytest.fixture
def local_spec():
    return load_spec("local", ROOT)


def _job_dir(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("print('hi')\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("field", JOB_FIELDS)
def test_control_character_in_job_is_one_line_naming_the_field(tmp_path, local_spec, field):
    doc = copy.deepcopy(JOB)
    JOB_FIELDS[field](doc)
    path = _job_dir(tmp_path) / "probe.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(RingfleetError) as caught:
        load_job(path, local_spec, tmp_path)
    expected_where = field.replace("\n", "\\n")
    assert caught.value.line().startswith(
        f"ringfleet: error: probe.yaml: {expected_where}: {CONTROL_LINE}"
    )


def test_control_character_in_job_exits_2_with_one_line(tmp_path):
    doc = copy.deepcopy(JOB)
    doc["entry"]["args"] = ["a\nb"]
    path = _job_dir(tmp_path) / "probe.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = run_cli("render", "local", str(path))
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)


# --- single fields: interface, storage.server, admin_cidr, env names -------------------------


@pytest.mark.parametrize("value", ["eth0;id", "eth0 x", "a" * 16, "$(id)"])
def test_cluster_network_interface_must_be_an_interface_name(value):
    with pytest.raises(RingfleetError, match="cluster.network.interface: must be a network"):
        cluster_from_mapping(_cluster(_spec_doc(interface=value)), "Pulumi.t.yaml")


def _onprem(server: str) -> dict:
    doc = read_yaml(ROOT / "Pulumi.onprem.yaml")["config"]["ringfleet:cluster"]
    doc["storage"]["server"] = server
    return doc


@pytest.mark.parametrize("server", ["gpu01;id", "$(id)", "-oProxyCommand=x", "a b", "a..b"])
def test_storage_server_must_be_a_host_name_or_address(server):
    with pytest.raises(RingfleetError, match="cluster.storage.server: must be a host name"):
        cluster_from_mapping(_onprem(server), "Pulumi.onprem.yaml")


@pytest.mark.parametrize("server", ["gpu01", "10.0.0.5", "fd00::5", "fs-1.efs.example.com"])
def test_storage_server_accepts_names_and_addresses(server):
    spec = cluster_from_mapping(_onprem(server), "Pulumi.onprem.yaml")
    assert spec.cluster.storage.server == server


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "0.0.0.0/1", "2001:db8::/32"])
def test_wide_admin_cidr_is_refused(cidr):
    with pytest.raises(RingfleetError, match="admin_cidr: wider than"):
        cluster_from_mapping(_cluster(_spec_doc(admin_cidr=cidr)), "Pulumi.t.yaml")


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "2001:db8::/32"])
def test_wide_admin_cidr_is_allowed_when_the_spec_says_so(cidr):
    doc = _spec_doc(admin_cidr=cidr, allow_wide_admin_cidr=True)
    spec = cluster_from_mapping(_cluster(doc), "Pulumi.t.yaml")
    assert spec.cluster.network.admin_cidr == cidr


@pytest.mark.parametrize("cidr", ["10.1.0.0/16", "2001:db8::/48", "203.0.113.7/32"])
def test_narrow_admin_cidr_is_accepted(cidr):
    spec = cluster_from_mapping(_cluster(_spec_doc(admin_cidr=cidr)), "Pulumi.t.yaml")
    assert spec.cluster.network.admin_cidr == cidr


@pytest.mark.parametrize("env", ["local\n", "local\nx", "../local"])
def test_env_name_must_match_whole(env):
    with pytest.raises(RingfleetError) as caught:
        load_spec(env, ROOT)
    assert caught.value.line().startswith("ringfleet: error: env: must be letters")


# --- entry.script stays inside the job folder or the project ----------------------------------


def _job_with_script(tmp_path: Path, script: str) -> Path:
    doc = {**JOB, "entry": {"script": script}}
    path = tmp_path / "project" / "jobs" / "probe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_entry_script_outside_the_project_is_refused(tmp_path, local_spec):
    (tmp_path / "secret.py").write_text("x", encoding="utf-8")
    path = _job_with_script(tmp_path, "../../secret.py")
    with pytest.raises(RingfleetError, match="job.entry.script: must stay inside"):
        load_job(path, local_spec, tmp_path / "project")


def test_entry_script_symlink_out_of_the_project_is_refused(tmp_path, local_spec):
    (tmp_path / "secret.py").write_text("x", encoding="utf-8")
    path = _job_with_script(tmp_path, "link.py")
    (path.parent / "link.py").symlink_to(tmp_path / "secret.py")
    with pytest.raises(RingfleetError, match="job.entry.script: must stay inside"):
        load_job(path, local_spec, tmp_path / "project")


def test_entry_script_from_ringfleet_state_is_refused(tmp_path, local_spec):
    key = tmp_path / "project" / ".ringfleet" / "local" / "ssh" / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_text("key", encoding="utf-8")
    path = _job_with_script(tmp_path, ".ringfleet/local/ssh/id_ed25519")
    with pytest.raises(RingfleetError, match=r"job.entry.script: must not be under .ringfleet/"):
        load_job(path, local_spec, tmp_path / "project")


def test_entry_script_in_the_project_is_accepted(tmp_path, local_spec):
    script = tmp_path / "project" / "scripts" / "train.py"
    script.parent.mkdir(parents=True)
    script.write_text("x", encoding="utf-8")
    path = _job_with_script(tmp_path, "scripts/train.py")
    assert load_job(path, local_spec, tmp_path / "project").entry_path.resolve() == script


# --- hostile values rendered in all four formats and executed --------------------------------

RECORDER = """#!/bin/sh
# Records what a launcher was asked to run, then does nothing.
printf '%s\\0' "$@" > "$RECORD_DIR/$(basename "$0").argv"
printf '%s' "$HOSTILE_VALUE" > "$RECORD_DIR/$(basename "$0").env"
"""


@pytest.fixture
def hostile(tmp_path):
    """A cluster with its mount in tmp_path and a job with hostile values in every field
    that may hold them, in a job file whose name is hostile too."""
    shared = tmp_path / "shared"
    doc = _spec_doc()
    _cluster(doc)["storage"]["mount"] = str(shared)
    spec = cluster_from_mapping(_cluster(doc), HOSTILE_DISPLAY)
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n", encoding="utf-8")
    workdir = f"{shared}/$(touch${{IFS}}pwned-workdir)"
    job = {
        **JOB,
        "entry": {"script": "train.py", "args": HOSTILE},
        "env": {"HOSTILE_VALUE": " ; ".join(HOSTILE)},
        "workdir": workdir,
        "launcher": "horovodrun",
    }
    path = project / HOSTILE_FILE_NAME
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    rendered = render_job(spec, load_job(path, spec, project), ROOT)
    Path(workdir).mkdir(parents=True)
    return tmp_path, rendered


def _execute(tmp_path: Path, script: str, name: str) -> dict[str, bytes]:
    stubs, record = tmp_path / "stubs", tmp_path / "record"
    for d in (stubs, record):
        d.mkdir(exist_ok=True)
    for launcher in ("timeout", "horovodrun", "mpirun", "srun"):
        stub = stubs / launcher
        stub.write_text(RECORDER, encoding="utf-8")
        stub.chmod(stat.S_IRWXU)
    path = tmp_path / name
    path.write_text(script, encoding="utf-8")
    run_in = tmp_path / "cwd"
    run_in.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "RECORD_DIR": str(record)}
    subprocess.run(["bash", str(path)], cwd=run_in, env=env, check=True, timeout=60)
    return {p.name: p.read_bytes() for p in record.iterdir()}


def _pwned(tmp_path: Path) -> list[str]:
    return sorted(str(p) for p in tmp_path.rglob("pwned*"))


def test_hostile_launch_script_runs_only_the_launcher(hostile):
    tmp_path, rendered = hostile
    records = _execute(tmp_path, rendered.script, "launch.sh")
    assert (sorted(records), _pwned(tmp_path)) == (["timeout.argv", "timeout.env"], [])


def test_hostile_launch_script_passes_every_argument_whole(hostile):
    tmp_path, rendered = hostile
    argv = _execute(tmp_path, rendered.script, "launch.sh")["timeout.argv"]
    assert argv.split(b"\0")[:-1] == [
        b"--kill-after=30s", b"3600", *(a.encode() for a in rendered.command)
    ]


def test_hostile_launch_script_exports_env_values_whole(hostile):
    tmp_path, rendered = hostile
    value = _execute(tmp_path, rendered.script, "launch.sh")["timeout.env"]
    assert value.decode() == " ; ".join(HOSTILE)


def test_hostile_sbatch_runs_only_mpirun(hostile):
    tmp_path, rendered = hostile
    records = _execute(tmp_path, rendered.sbatch, "job.sbatch")
    assert (sorted(records), _pwned(tmp_path)) == (["mpirun.argv", "mpirun.env"], [])


def test_hostile_sbatch_passes_every_argument_whole(hostile):
    tmp_path, rendered = hostile
    argv = _execute(tmp_path, rendered.sbatch, "job.sbatch")["mpirun.argv"]
    expected = slurm_command(rendered.job, rendered.env, rendered.wrapper_path)[1:]
    assert argv.split(b"\0")[:-1] == [a.encode() for a in expected]


def test_hostile_hostfile_has_only_the_placement_lines(hostile):
    _, rendered = hostile
    lines = [line for line in rendered.hostfile.splitlines() if not line.startswith("#")]
    assert [line for line in lines if line] == [f"{n} slots={r}" for n, r in rendered.placement]


def test_hostile_mpijob_is_one_document(hostile):
    _, rendered = hostile
    assert len(list(yaml.safe_load_all(rendered.mpijob))) == 1


def test_hostile_mpijob_keeps_the_launcher_command(hostile):
    _, rendered = hostile
    doc = yaml.safe_load(rendered.mpijob)
    launcher = doc["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][-len(HOSTILE):] == HOSTILE


@pytest.mark.parametrize("fmt", ["script", "hostfile", "sbatch", "mpijob"])
def test_every_comment_line_of_a_render_starts_with_a_hash(hostile, fmt):
    _, rendered = hostile
    text = rendered.text(fmt)
    # The hostile file name's lines may only appear as comment lines.
    for marker in ("touch pwned-name", "node9 slots=99", "kind: Pod", "touch pwned-spec"):
        assert all(line.startswith("# ") for line in text.splitlines() if marker in line)
