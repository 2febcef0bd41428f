"""Launch renders: golden text, the MPIJob schema, flags, quoting and the environment."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ringfleet.errors import RingfleetError
from ringfleet.jobs.render import (
    MPIJOB_API_VERSION,
    NO_BINDING_ARGS,
    RENDER_FORMATS,
    TAG_OUTPUT_ARGS,
    TCP_ONLY_ARGS,
    THREADS_PER_RANK_VAR,
    WRAPPER_NAME,
    WRAPPER_SOURCE,
    RenderedJob,
    render_job,
    slurm_time,
)
from ringfleet.jobs.spec import Job, load_job
from ringfleet.spec import ClusterSpec, cluster_from_mapping, load_spec
from ringfleet.yamlio import read_yaml
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
SCHEMA = ROOT.parent / "shared" / "schemas" / "mpijob-v2beta1.schema.json"
UPDATE_GOLDEN = os.environ.get("RINGFLEET_UPDATE_GOLDEN") == "1"





def with_launcher(job: Job, launcher: str) -> Job:
    return job.model_copy(update={"launcher": launcher})


@pytest.fixture(scope="module")
def horovodrun(local: ClusterSpec, digits: Job) -> RenderedJob:
    return render_job(local, digits, ROOT)


@pytest.fixture(scope="module")
def mpirun(local: ClusterSpec, digits: Job) -> RenderedJob:
    return render_job(local, with_launcher(digits, "mpirun"), ROOT)


def job_from(tmp_path: Path, spec: ClusterSpec, **fields: object) -> Job:
    doc = {"name": "probe", "entry": {"script": "scripts/digits.py"}, **fields}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_job(path, spec, ROOT)


def render(tmp_path: Path, spec: ClusterSpec, **fields: object) -> RenderedJob:
    return render_job(spec, job_from(tmp_path, spec, **fields), ROOT)


def launcher_argv(rendered: RenderedJob) -> list[str]:
    """The launcher's argv as bash would split the script's last line, minus `exec timeout`."""
    last = rendered.script.rstrip("\n").splitlines()[-1]
    argv = shlex.split(last)
    assert argv[:4] == ["exec", "timeout", "--kill-after=30s", str(rendered.job.timeout_seconds)]
    return argv[4:]


def local_with_ssh_port(port: int) -> ClusterSpec:
    doc = read_yaml(ROOT / "Pulumi.local.yaml")
    cluster = doc["config"]["ringfleet:cluster"]
    cluster["ssh"]["port"] = port
    return cluster_from_mapping(cluster, "Pulumi.local.yaml")


# --- golden renders of the local env's digits job --------------------------------------------

GOLDEN_CASES = [
    ("digits-local.hostfile", "horovodrun", "hostfile"),
    ("digits-local.horovodrun.sh", "horovodrun", "script"),
    ("digits-local.mpirun.sh", "mpirun", "script"),
    ("digits-local.sbatch", "horovodrun", "sbatch"),
    ("digits-local.mpijob.yaml", "horovodrun", "mpijob"),
]


@pytest.mark.parametrize(("golden", "launcher", "fmt"), GOLDEN_CASES)
def test_golden(
    request: pytest.FixtureRequest, golden: str, launcher: str, fmt: str
) -> None:
    text = request.getfixturevalue(launcher).text(fmt)
    path = GOLDEN / golden
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing; run with RINGFLEET_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("launcher", "fmt"),
    [("horovodrun", "script"), ("mpirun", "script"), ("horovodrun", "sbatch")],
)
def test_bash_accepts_the_syntax(request: pytest.FixtureRequest, launcher: str, fmt: str) -> None:
    text = request.getfixturevalue(launcher).text(fmt)
    result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


# --- the Kubeflow MPIJob ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA.is_file():
        pytest.skip(f"MPIJob schema not found at {SCHEMA} (shared/ beside the repo)")
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("env", "fields"),
    [
        pytest.param("local", {"pool": "cpu", "processes": 4, "slots_per_node": 2}, id="cpu"),
        pytest.param("aws-dev", {"pool": "gpu", "processes": 8}, id="gpu"),
        pytest.param("local", {"pool": "cpu", "processes": 2, "tuning": False}, id="no-env"),
    ],
)
def test_mpijob_matches_the_schema(
    tmp_path: Path, schema: dict, env: str, fields: dict
) -> None:
    import jsonschema

    manifest = yaml.safe_load(render(tmp_path, load_spec(env, ROOT), **fields).mpijob)
    jsonschema.validate(manifest, schema)


def unknown_keys(value: object, schema: dict, where: str = "") -> list[str]:
    """Keys the schema does not declare: Kubernetes' strict field validation rejects them."""
    if isinstance(value, list):
        items = schema.get("items", {})
        return [k for i, v in enumerate(value) for k in unknown_keys(v, items, f"{where}[{i}]")]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    if not isinstance(value, dict) or not (properties or isinstance(extra, dict)):
        return []
    found = []
    for key, item in value.items():
        if key in properties:
            found += unknown_keys(item, properties[key], f"{where}.{key}")
        elif isinstance(extra, dict):
            found += unknown_keys(item, extra, f"{where}.{key}")
        else:
            found.append(f"{where}.{key}")
    return found


def test_mpijob_uses_only_fields_the_schema_declares(
    tmp_path: Path, schema: dict, aws: ClusterSpec
) -> None:
    manifest = yaml.safe_load(render(tmp_path, aws, pool="gpu", processes=8).mpijob)
    assert unknown_keys(manifest, schema) == []


def mpijob(rendered: RenderedJob) -> dict:
    return yaml.safe_load(rendered.mpijob)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("apiVersion",), MPIJOB_API_VERSION),
        (("kind",), "MPIJob"),
        (("metadata", "name"), "digits"),
        (("spec", "slotsPerWorker"), 2),
        (("spec", "runPolicy", "activeDeadlineSeconds"), 1200),
        (("spec", "mpiReplicaSpecs", "Launcher", "replicas"), 1),
        (("spec", "mpiReplicaSpecs", "Worker", "replicas"), 2),
    ],
)
def test_mpijob_field(horovodrun: RenderedJob, path: tuple[str, ...], expected: object) -> None:
    value = mpijob(horovodrun)
    for key in path:
        value = value[key]
    assert value == expected


def _container(manifest: dict, role: str) -> dict:
    return manifest["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["containers"][0]


def test_mpijob_worker_cpu_is_the_ranks_cores(horovodrun: RenderedJob) -> None:
    assert _container(mpijob(horovodrun), "Worker")["resources"]["limits"] == {"cpu": "2"}


def test_mpijob_worker_gets_one_gpu_per_rank(tmp_path: Path, aws: ClusterSpec) -> None:
    limits = _container(mpijob(render(tmp_path, aws, pool="gpu", processes=8)), "Worker")
    assert limits["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_mpijob_launcher_runs_the_mpirun_command(horovodrun: RenderedJob) -> None:
    command = _container(mpijob(horovodrun), "Launcher")["command"]
    assert command[-2:] == ["/opt/ringfleet/venv/bin/python", "/shared/jobs/digits/digits.py"]


def test_mpijob_launcher_has_the_tuning_env(horovodrun: RenderedJob) -> None:
    env = _container(mpijob(horovodrun), "Launcher")["env"]
    assert {"name": THREADS_PER_RANK_VAR, "value": "1"} in env


# --- horovodrun and mpirun lines ---------------------------------------------------------------


def test_horovodrun_argv(horovodrun: RenderedJob) -> None:
    assert launcher_argv(horovodrun) == [
        "/opt/ringfleet/venv/bin/horovodrun",
        "-np", "4",
        "-H", "rf-local-cpu-1:2,rf-local-cpu-2:2",
        "--network-interface", "eth0",
        "--mpi",
        "/opt/ringfleet/venv/bin/python", "/shared/jobs/digits/rankexec.py",
        "/opt/ringfleet/venv/bin/python", "/shared/jobs/digits/digits.py",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(NO_BINDING_ARGS, id="no-binding"),
        pytest.param(TCP_ONLY_ARGS, id="tcp-only"),
        pytest.param(TAG_OUTPUT_ARGS, id="tag-output"),
        pytest.param(["--hostfile", "hostfile"], id="hostfile"),
        pytest.param(["-mca", "btl_tcp_if_include", "eth0"], id="btl-interface"),
        pytest.param(["-mca", "oob_tcp_if_include", "eth0"], id="oob-interface"),
        pytest.param(["-x", THREADS_PER_RANK_VAR], id="export-threads-per-rank"),
        pytest.param(["-x", "KMP_BLOCKTIME"], id="export-blocktime"),
    ],
)
def test_mpirun_has_flags(mpirun: RenderedJob, flags: list[str]) -> None:
    argv = launcher_argv(mpirun)
    assert any(argv[i : i + len(flags)] == flags for i in range(len(argv)))


def test_mpirun_equivalent_is_the_mpirun_jobs_line(
    horovodrun: RenderedJob, mpirun: RenderedJob
) -> None:
    assert shlex.split(horovodrun.mpirun_equivalent) == launcher_argv(mpirun)


def test_mpirun_jobs_have_no_equivalent(mpirun: RenderedJob) -> None:
    assert mpirun.mpirun_equivalent is None


def test_default_ssh_port_adds_no_flag(mpirun: RenderedJob) -> None:
    assert "plm_rsh_args" not in mpirun.script


def test_horovodrun_ssh_port(tmp_path: Path) -> None:
    rendered = render(tmp_path, local_with_ssh_port(2222), pool="cpu", processes=2)
    assert "--ssh-port 2222 " in rendered.script


def test_mpirun_ssh_port(tmp_path: Path) -> None:
    spec = local_with_ssh_port(2222)
    rendered = render(tmp_path, spec, pool="cpu", processes=2, launcher="mpirun")
    assert " -mca plm_rsh_args '-p 2222' " in rendered.script


def test_interface_override_reaches_horovodrun(tmp_path: Path, local: ClusterSpec) -> None:
    rendered = render(tmp_path, local, pool="cpu", processes=4, interface="eth1")
    assert "--network-interface eth1 " in rendered.script


# --- quoting ---------------------------------------------------------------------------------

AWKWARD = """it's a "quoted" $HOME `run`"""


@pytest.fixture()
def quoted(tmp_path: Path, local: ClusterSpec) -> RenderedJob:
    return render(
        tmp_path, local, pool="cpu", processes=2,
        entry={"script": "scripts/digits.py", "args": ["--title", AWKWARD]},
        env={"RUN_NOTE": AWKWARD},
    )  # fmt: skip


def test_argument_with_spaces_and_quotes_survives_the_shell(quoted: RenderedJob) -> None:
    assert launcher_argv(quoted)[-2:] == ["--title", AWKWARD]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_passes_the_argument_through_unchanged(quoted: RenderedJob) -> None:
    exec_line = quoted.script.rstrip("\n").splitlines()[-1]
    args = exec_line.split(" --title ", 1)[1]
    out = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {args}"], capture_output=True, check=True, text=True
    ).stdout
    assert out.split("\0")[:-1] == [AWKWARD]


def test_argument_is_single_quoted(quoted: RenderedJob) -> None:
    assert """ --title 'it'"'"'s a "quoted" $HOME `run`'""" in quoted.script


def test_env_value_with_spaces_and_quotes_is_quoted(quoted: RenderedJob) -> None:
    assert """export RUN_NOTE='it'"'"'s a "quoted" $HOME `run`'\n""" in quoted.script


def test_argument_survives_in_the_mpijob(quoted: RenderedJob) -> None:
    assert _container(mpijob(quoted), "Launcher")["command"][-1] == AWKWARD


# --- environment -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (THREADS_PER_RANK_VAR, "2"),
        ("KMP_BLOCKTIME", "1"),
    ],
)
def test_cpu_tuning_follows_threads_per_rank(
    tmp_path: Path, aws: ClusterSpec, name: str, value: str
) -> None:
    assert render(tmp_path, aws, pool="cpu", processes=4).env[name] == value


def test_tuning_off_exports_nothing(tmp_path: Path, local: ClusterSpec) -> None:
    assert render(tmp_path, local, pool="cpu", processes=2, tuning=False).env == {}


def test_job_env_wins_over_tuning(tmp_path: Path, local: ClusterSpec) -> None:
    rendered = render(tmp_path, local, pool="cpu", processes=2, env={"OMP_NUM_THREADS": "3"})
    assert rendered.script.count("export OMP_NUM_THREADS=") == 1


def test_job_env_value_is_exported(tmp_path: Path, local: ClusterSpec) -> None:
    rendered = render(tmp_path, local, pool="cpu", processes=2, env={"OMP_NUM_THREADS": "3"})
    assert "export OMP_NUM_THREADS=3\n" in rendered.script


# The wrapper sizes these on each node from the placement; pinning is left to the job.
@pytest.mark.parametrize(
    "name",
    ["OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "KMP_AFFINITY"],
)
def test_cpu_tuning_leaves_to_the_wrapper_or_the_job(
    tmp_path: Path, aws: ClusterSpec, name: str
) -> None:
    assert name not in render(tmp_path, aws, pool="cpu", processes=4).env


def test_gpu_ranks_get_no_thread_tuning(tmp_path: Path, aws: ClusterSpec) -> None:
    assert THREADS_PER_RANK_VAR not in render(tmp_path, aws, pool="gpu", processes=4).env


# --- the per-rank wrapper --------------------------------------------------------------------

WRAPPED = [
    "/opt/ringfleet/venv/bin/python", "/shared/jobs/digits/rankexec.py",
    "/opt/ringfleet/venv/bin/python", "/shared/jobs/digits/digits.py",
]  # fmt: skip


def _ends_with_wrapped_rank(argv: list[str]) -> bool:
    return argv[-len(WRAPPED) :] == WRAPPED


@pytest.mark.parametrize(
    ("launcher", "fmt"),
    [("horovodrun", "script"), ("mpirun", "script"), ("horovodrun", "sbatch")],
)
def test_every_rank_runs_through_the_wrapper(
    request: pytest.FixtureRequest, launcher: str, fmt: str
) -> None:
    text = request.getfixturevalue(launcher).text(fmt)
    # The scripts exec their launcher; the sbatch runs mpirun and then looks at its status.
    launch = next(line for line in text.splitlines() if line.startswith(("exec ", "mpirun ")))
    assert _ends_with_wrapped_rank(shlex.split(launch))


def test_mpijob_ranks_run_through_the_wrapper(horovodrun: RenderedJob) -> None:
    assert _ends_with_wrapped_rank(_container(mpijob(horovodrun), "Launcher")["command"])


def test_wrapper_defaults_to_the_workdir(horovodrun: RenderedJob) -> None:
    assert horovodrun.wrapper_path == f"/shared/jobs/digits/{WRAPPER_NAME}"


def test_wrapper_path_can_be_given(local: ClusterSpec, digits: Job) -> None:
    rendered = render_job(local, digits, ROOT, wrapper="/shared/runs/r1/rankexec.py")
    assert rendered.command[-4:-2] == (
        "/opt/ringfleet/venv/bin/python",
        "/shared/runs/r1/rankexec.py",
    )


def test_wrapper_format_is_the_wrapper_source(horovodrun: RenderedJob) -> None:
    assert horovodrun.text("wrapper") == WRAPPER_SOURCE.read_text(encoding="utf-8")


def test_gpu_ranks_pin_nccl_to_the_interface(tmp_path: Path, aws: ClusterSpec) -> None:
    assert render(tmp_path, aws, pool="gpu", processes=4).env["NCCL_SOCKET_IFNAME"] == "ens5"


def local_on_profile(profile: str) -> ClusterSpec:
    doc = read_yaml(ROOT / "Pulumi.local.yaml")
    cluster = doc["config"]["ringfleet:cluster"]
    cluster["software"] = {"profile": profile}
    cluster["pools"] = [p for p in cluster["pools"] if not p.get("accelerator")]
    return cluster_from_mapping(cluster, "Pulumi.local.yaml")


def test_tf221_ranks_use_legacy_keras(tmp_path: Path) -> None:
    rendered = render(tmp_path, local_on_profile("tf2.21"), pool="cpu", processes=2)
    assert rendered.env["TF_USE_LEGACY_KERAS"] == "1"


def test_tf221_script_exports_legacy_keras(tmp_path: Path) -> None:
    rendered = render(tmp_path, local_on_profile("tf2.21"), pool="cpu", processes=2)
    assert "export TF_USE_LEGACY_KERAS=1\n" in rendered.script


def test_tf221_untuned_ranks_still_use_legacy_keras(tmp_path: Path) -> None:
    spec = local_on_profile("tf2.21")
    rendered = render(tmp_path, spec, pool="cpu", processes=2, tuning=False)
    assert rendered.env == {"TF_USE_LEGACY_KERAS": "1"}


def test_tf215_ranks_keep_keras_alone(horovodrun: RenderedJob) -> None:
    assert "TF_USE_LEGACY_KERAS" not in horovodrun.env


def test_job_env_wins_over_legacy_keras(tmp_path: Path) -> None:
    spec = local_on_profile("tf2.21")
    rendered = render(tmp_path, spec, pool="cpu", processes=2, env={"TF_USE_LEGACY_KERAS": "0"})
    assert rendered.env["TF_USE_LEGACY_KERAS"] == "0"


# --- sbatch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "#SBATCH --job-name=probe",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks=8",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --time=02:00:00",
        "#SBATCH --gres=gpu:4",
    ],
)
def test_sbatch_for_a_gpu_job(tmp_path: Path, aws: ClusterSpec, line: str) -> None:
    rendered = render(tmp_path, aws, pool="gpu", processes=8, timeout="2h")
    assert line in rendered.sbatch.splitlines()


def test_sbatch_for_a_cpu_job_asks_no_gpus(horovodrun: RenderedJob) -> None:
    assert "--gres" not in horovodrun.sbatch


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(59, "00:00:59"), (1200, "00:20:00"), (3600, "01:00:00"), (86400, "1-00:00:00"),
     (93784, "1-02:03:04")],
)
def test_slurm_time(seconds: int, text: str) -> None:
    assert slurm_time(seconds) == text


# --- placement in the render -----------------------------------------------------------------


def test_ranks_follow_slot_order(horovodrun: RenderedJob) -> None:
    assert horovodrun.ranks == (
        "rf-local-cpu-1", "rf-local-cpu-1", "rf-local-cpu-2", "rf-local-cpu-2",
    )  # fmt: skip


def test_launch_node_is_the_first_placed(horovodrun: RenderedJob) -> None:
    assert horovodrun.launch_node == "rf-local-cpu-1"


def test_hostfile_of_an_uneven_placement(tmp_path: Path, local: ClusterSpec) -> None:
    rendered = render(tmp_path, local, pool="cpu", processes=5)
    assert rendered.hostfile.splitlines()[1:] == [
        "rf-local-cpu-1 slots=2", "rf-local-cpu-2 slots=2", "rf-local-cpu-3 slots=1",
    ]  # fmt: skip


# --- formats and templates -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", RENDER_FORMATS)
def test_every_format_ends_with_a_newline(horovodrun: RenderedJob, fmt: str) -> None:
    assert horovodrun.text(fmt).endswith("\n")


def test_unknown_format_is_refused(horovodrun: RenderedJob) -> None:
    with pytest.raises(RingfleetError) as err:
        horovodrun.text("helm")
    assert err.value.line() == (
        "ringfleet: error: --format: must be one of script, hostfile, sbatch, mpijob, wrapper "
        "(got 'helm')"
    )


def test_missing_templates_are_one_line(tmp_path: Path, local: ClusterSpec, digits: Job) -> None:
    with pytest.raises(RingfleetError) as err:
        render_job(local, digits, tmp_path)
    assert err.value.line() == (
        "ringfleet: error: templates/hostfile.j2: "
        "no such template; is RINGFLEET_ROOT the ringfleet repo?"
    )


def test_single_node_horovodrun_names_no_interface(tmp_path: Path, local: ClusterSpec) -> None:
    # horovodrun resolves a lone local host to 127.0.0.1 and fails to match the NIC.
    rendered = render(tmp_path, local, pool="cpu", processes=2, interface="eth1")
    assert "--network-interface" not in rendered.script.splitlines()[-1]
