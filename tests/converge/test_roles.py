"""Static and check-mode tests of the Ansible roles, the component playbooks and site.yml.

No Docker is needed: the roles are linted, their defaults and argument specs are
compared, bad input is run against localhost in check mode (argument validation
stops it before any task), and the nvidia role renders its package list in check
mode with the GPU pool's variables from the rendered onprem inventory.

The real converge is done by hand on a scratch container, with the inventory in
tests/data/roles/converge-inventory.yml:

    docker run -d --name rfrole-site --hostname rfrole-site ringfleet/base:bookworm sleep infinity
    ansible-playbook -i tests/data/roles/converge-inventory.yml site.yml \
        -e ringfleet_ssh_private_key_file=KEY -e ringfleet_ssh_public_key_file=KEY.pub
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "roles"
BIN = Path(sys.executable).parent

# The components of site.yml in the order they converge, with their target group.
# nvidia precedes horovod: a Horovod build with NCCL needs CUDA and NCCL installed.
COMPONENTS = (
    ("site_sources", "ringfleet_nodes"),
    ("ca_trust", "ringfleet_nodes"),
    ("common", "ringfleet_nodes"),
    ("ssh_mesh", "ringfleet_nodes"),
    ("nfs_server", "nfs_server"),
    ("nfs_client", "ringfleet_nodes"),
    ("openmpi", "ringfleet_nodes"),
    ("tensorflow", "ringfleet_nodes"),
    ("mkl", "ringfleet_nodes"),
    ("nvidia", "nvidia_gpu"),
    ("horovod", "ringfleet_nodes"),
    ("slurm", "slurm_nodes"),
)
ROLES = tuple(name for name, _ in COMPONENTS)
# Roles the components include, not applied by site.yml on their own.
HELPER_ROLES = ("apt_pins",)
ALL_ROLES = ROLES + HELPER_ROLES
LINTED = ("roles", "playbooks", "site.yml")


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _defaults(role: str) -> dict:
    return _load(ROOT / "roles" / role / "defaults" / "main.yml") or {}


def _spec_options(role: str) -> dict:
    return _load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"][
        "options"
    ]


def _tasks(items: list) -> list[dict]:
    """Every task of a task list, blocks flattened."""
    found = []
    for item in items or []:
        found.append(item)
        for key in ("block", "rescue", "always"):
            found.extend(_tasks(item.get(key, [])))
    return found


def _role_tasks(role: str) -> list[dict]:
    tasks = _tasks(_load(ROOT / "roles" / role / "tasks" / "main.yml"))
    return [t for t in tasks if "block" not in t]


DEFAULTS = [(role, name) for role in ALL_ROLES for name in _defaults(role)]
SPEC_OPTIONS = [(role, name) for role in ALL_ROLES for name in _spec_options(role)]
TASKS = [(role, t["name"]) for role in ALL_ROLES for t in _role_tasks(role)]


def _role_tasks_and_handlers(role: str) -> list[dict]:
    found = []
    for part in ("tasks", "handlers"):
        path = ROOT / "roles" / role / part / "main.yml"
        if path.exists():
            found.extend(t for t in _tasks(_load(path)) if "block" not in t)
    return found


COMMANDS = [
    (role, t["name"])
    for role in ALL_ROLES
    for t in _role_tasks_and_handlers(role)
    if {"ansible.builtin.command", "ansible.builtin.shell"} & t.keys()
]


def _ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=ROOT,
        env={**_ansible_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _playbook(*args: str, **env: str) -> subprocess.CompletedProcess:
    return _run([str(BIN / "ansible-playbook"), *args], **env)


def _shown(proc: subprocess.CompletedProcess) -> str:
    out, err = proc.stdout[-6000:], proc.stderr[-3000:]
    return f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


@pytest.fixture(scope="module")
def rendered_onprem(tmp_path_factory) -> Path:
    """The onprem inventory as the renderer prints it (a static env: no stack needed)."""
    proc = _run([str(BIN / "ringfleet"), "inventory", "onprem"])
    assert proc.returncode == 0, _shown(proc)
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(proc.stdout, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gpu_pool_vars(rendered_onprem, tmp_path_factory) -> Path:
    """The variables the renderer sets for the onprem GPU pool, as an extra-vars file."""
    inventory = _load(rendered_onprem)
    pool_vars = inventory["all"]["children"]["pool_gpu"]["vars"]
    path = tmp_path_factory.mktemp("vars") / "gpu.yml"
    path.write_text(yaml.safe_dump(pool_vars), encoding="utf-8")
    return path


# --- layout -----------------------------------------------------------------


@pytest.mark.parametrize("role", ALL_ROLES)
def test_role_has_argument_specs(role):
    assert (ROOT / "roles" / role / "meta" / "argument_specs.yml").is_file()


@pytest.mark.parametrize(("role", "name"), DEFAULTS)
def test_default_is_prefixed_with_role_name(role, name):
    assert name.startswith(role + "_")


@pytest.mark.parametrize(("role", "name"), DEFAULTS)
def test_default_is_documented_in_argument_specs(role, name):
    option = _spec_options(role).get(name)
    assert option is not None, f"{name} is not in roles/{role}/meta/argument_specs.yml"
    assert {"type", "default", "description"} <= option.keys(), option


@pytest.mark.parametrize(("role", "name"), SPEC_OPTIONS)
def test_argument_spec_option_has_a_default(role, name):
    assert name in _defaults(role), f"{name} has no value in roles/{role}/defaults/main.yml"


@pytest.mark.parametrize(("role", "name"), DEFAULTS)
def test_readme_lists_default(role, name):
    assert name in (ROOT / "roles" / role / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("role", "name"), TASKS)
def test_task_name_is_a_sentence(role, name):
    assert name[0].isupper() and name.endswith("."), name


@pytest.mark.parametrize(("role", "name"), COMMANDS)
def test_command_declares_when_it_changes(role, name):
    (task,) = [t for t in _role_tasks_and_handlers(role) if t["name"] == name]
    assert "changed_when" in task


# --- site.yml and the component playbooks -------------------------------------


def test_site_imports_components_in_order():
    imported = [
        Path(entry["ansible.builtin.import_playbook"]).stem for entry in _load(ROOT / "site.yml")
    ]
    assert imported == ["validate", *ROLES]


@pytest.mark.parametrize("role", ROLES)
def test_site_puts_component_behind_feature_flag(role):
    (entry,) = [
        e
        for e in _load(ROOT / "site.yml")
        if e["ansible.builtin.import_playbook"] == f"playbooks/{role}.yml"
    ]
    assert entry["when"] == f"ringfleet_enable_{role} | default(true) | bool"


@pytest.mark.parametrize(("role", "group"), COMPONENTS)
def test_component_playbook_applies_one_role_to_its_group(role, group):
    (play,) = _load(ROOT / "playbooks" / f"{role}.yml")
    assert (play["hosts"], play["roles"]) == (group, [{"role": role}])


# --- linters --------------------------------------------------------------------


def test_yamllint_passes():
    proc = _run([str(BIN / "yamllint"), "-s", *LINTED])
    assert proc.returncode == 0, _shown(proc)


def test_ansible_lint_production_profile_passes():
    proc = _run([str(BIN / "ansible-lint"), "--profile", "production", *LINTED])
    assert proc.returncode == 0, _shown(proc)


# --- argument validation ----------------------------------------------------------

BAD_INPUT = (
    ("openmpi", "openmpi_implementation", "mpich"),
    ("tensorflow", "tensorflow_version", "2.16.1"),
    ("horovod", "horovod_version", "0.27.0"),
    ("nfs_server", "nfs_server_implementation", "samba"),
    ("nfs_client", "nfs_client_storage_kind", "s3"),
    ("slurm", "slurm_proctrack_type", "proctrack/none"),
)


@pytest.fixture(scope="module")
def bad_input_runs() -> dict[str, subprocess.CompletedProcess]:
    runs = {}
    for role, name, value in BAD_INPUT:
        runs[name] = _playbook(
            "-i",
            "localhost,",
            "-c",
            "local",
            "--check",
            str(DATA / "apply_role.yml"),
            "-e",
            json.dumps({"rf_test_role": role, name: value}),
        )
    return runs


@pytest.mark.parametrize(("role", "name", "value"), BAD_INPUT)
def test_bad_input_fails_naming_the_variable(bad_input_runs, role, name, value):
    proc = bad_input_runs[name]
    assert proc.returncode != 0 and name in proc.stdout + proc.stderr, _shown(proc)


@pytest.mark.parametrize(("role", "name", "value"), BAD_INPUT)
def test_bad_input_runs_no_task_of_the_role(bad_input_runs, role, name, value):
    proc = bad_input_runs[name]
    ran = re.findall(rf"^TASK \[{role} : (.*?)\] \*", proc.stdout, re.M)
    assert ran and all(t.startswith("Validating arguments") for t in ran), _shown(proc)


@pytest.mark.parametrize(("role", "name", "value"), BAD_INPUT)
def test_bad_input_changes_nothing(bad_input_runs, role, name, value):
    proc = bad_input_runs[name]
    assert re.search(r"changed=0 .*failed=1", proc.stdout), _shown(proc)


def test_site_validation_accepts_the_rendered_inventory(rendered_onprem):
    # Validation is an action on the controller; `local` guarantees no node is contacted.
    proc = _playbook(
        "-i", str(rendered_onprem), "-e", "ansible_connection=local", "playbooks/validate.yml"
    )
    assert proc.returncode == 0, _shown(proc)


@pytest.fixture(scope="module")
def rendered_tf221(tmp_path_factory) -> Path:
    """An inventory with a tf2.21 pool, rendered from the spec alone (no stack)."""
    from ringfleet.converge.inventory import dump_inventory, render_inventory
    from ringfleet.providers.outputs import static_outputs
    from ringfleet.spec import cluster_from_mapping

    doc = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text(encoding="utf-8"))
    cluster = doc["config"]["ringfleet:cluster"]
    cluster["pools"] = [p for p in cluster["pools"] if not p.get("accelerator")]
    cluster["software"] = {"profile": "tf2.21"}
    spec = cluster_from_mapping(cluster, "Pulumi.local.yaml", env="local")
    path = tmp_path_factory.mktemp("tf221") / "hosts.yml"
    path.write_text(dump_inventory(render_inventory(static_outputs(spec))), encoding="utf-8")
    return path


def test_rendered_tf221_pool_asks_for_tf_keras(rendered_tf221):
    pool = _load(rendered_tf221)["all"]["children"]["pool_cpu"]["vars"]
    assert (pool["tensorflow_package"], pool["tensorflow_version"]) == ("tensorflow", "2.21.0")
    assert pool["tensorflow_legacy_keras_version"] == "2.21.0"


def test_site_validation_accepts_a_tf221_pool(rendered_tf221):
    proc = _playbook(
        "-i", str(rendered_tf221), "-e", "ansible_connection=local", "playbooks/validate.yml"
    )
    assert proc.returncode == 0, _shown(proc)


def test_site_validation_rejects_an_untested_tensorflow(rendered_onprem):
    proc = _playbook(
        "-i",
        str(rendered_onprem),
        "-e",
        "ansible_connection=local",
        "-e",
        "tensorflow_version=2.16.1",
        "playbooks/validate.yml",
    )
    assert proc.returncode != 0 and "tensorflow_version" in proc.stdout, _shown(proc)


# --- nvidia in check mode -----------------------------------------------------------------


@pytest.fixture(scope="module")
def nvidia_check(gpu_pool_vars) -> subprocess.CompletedProcess:
    return _playbook(
        "-i",
        "localhost,",
        "-c",
        "local",
        "--check",
        "-e",
        f"@{gpu_pool_vars}",
        str(DATA / "nvidia_check.yml"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )


@pytest.fixture(scope="module")
def nvidia_packages(nvidia_check) -> list[str]:
    assert nvidia_check.returncode == 0, _shown(nvidia_check)
    # The JSON document starts on a line of its own; the timing callback prints around it.
    text = nvidia_check.stdout
    result, _ = json.JSONDecoder().raw_decode(text[text.index("\n{") + 1 :])
    (task,) = [
        t
        for t in result["plays"][0]["tasks"]
        if t["task"]["name"] == "nvidia : Show the NVIDIA packages this node gets."
    ]
    return task["hosts"]["localhost"]["nvidia_packages"]


def test_nvidia_check_mode_passes(nvidia_check):
    assert nvidia_check.returncode == 0, _shown(nvidia_check)


@pytest.mark.parametrize(
    "package",
    [
        "cuda-drivers-535",
        "cuda-toolkit-12-2",
        "libnccl2=2.18.5-1+cuda12.2",
        "libnccl-dev=2.18.5-1+cuda12.2",
        "dkms",
    ],
)
def test_nvidia_renders_pinned_package(nvidia_packages, package):
    assert package in nvidia_packages
