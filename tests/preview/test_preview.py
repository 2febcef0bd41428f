"""`ringfleet preview`: two revisions of a throwaway git repository, and the report between them.

The base revision pins the local env to a `tf2.14` profile that only this
fixture's compatibility table has; the head revision then:

- adds pool `big` to aws-dev,
- bumps local from TensorFlow 2.14.1 to 2.15.1 (profile tf2.15),
- raises the digits job from 4 to 6 ranks,
- changes the EFS performance mode in `stacks/aws_cluster.py` (replaces the EFS),
- adds a lockfile for local.

Each revision runs its own copy of ringfleet and stacks, as `ringfleet preview` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ringfleet.converge.siteroles import pattern_matches, pool_roles
from ringfleet.errors import RingfleetError
from ringfleet.preview import graph
from ringfleet.preview.infra import live_flags
from ringfleet.preview.report import MARKER, preview
from tests.conftest import ROOT, run_cli

COPIED = [
    "Pulumi.yaml",
    "Pulumi.aws-dev.yaml",
    "Pulumi.local.yaml",
    "Pulumi.onprem.yaml",
    "jobs",
    "templates",
    "ringfleet",
    "stacks",
]
GIT = [
    "git",
    "-c", "user.name=ringfleet tests",
    "-c", "user.email=tests@ringfleet.invalid",
    "-c", "commit.gpgsign=false",
    "-c", "init.defaultBranch=main",
]  # fmt: skip

# A site.yml of three plays, enough to tell which pools get which roles.
SITE = """\
- name: Apply the common component.
  ansible.builtin.import_playbook: playbooks/common.yml
- name: Apply the nvidia component.
  ansible.builtin.import_playbook: playbooks/nvidia.yml
- name: Apply the nfs_server component.
  ansible.builtin.import_playbook: playbooks/nfs_server.yml
"""
PLAYBOOKS = {
    "common.yml": "- name: Common.\n  hosts: ringfleet_nodes\n  roles:\n    - role: common\n",
    "nvidia.yml": "- name: NVIDIA.\n  hosts: nvidia_gpu\n  roles:\n    - role: nvidia\n",
    "nfs_server.yml": "- name: NFS.\n  hosts: nfs_server\n  roles:\n    - role: nfs_server\n",
}

# Horovod 0.28.1 builds against TF 2.14 as well; only this fixture's table lists it.
TF214_PROFILE = """\
    Profile(
        name="tf2.14",
        os="debian-bookworm",
        python="3.11",
        openmpi="4.1.4",
        openmpi_debian="4.1.4-3+b1",
        tensorflow="2.14.1",
        tensorflow_package="tensorflow-cpu",
        horovod="0.28.1",
        mkl="2024.2.2",
        tested="fixture of tests/preview/test_preview.py only: never built",
    ),
"""
BIG_POOL = """\
      - name: big
        count: 2
        instance_type: c7i.8xlarge
"""
LOCKFILE = "# ringfleet lock (fixture)\nopenmpi 4.1.4-3+b1\n"


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path.name} no longer has exactly one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def copy_project(dest: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=skip)
        else:
            shutil.copy(src, dest / name)
    (dest / "site.yml").write_text(SITE, encoding="utf-8")
    (dest / "playbooks").mkdir()
    for name, text in PLAYBOOKS.items():
        (dest / "playbooks" / name).write_text(text, encoding="utf-8")


def make_base(repo: Path) -> None:
    copy_project(repo)
    edit(
        repo / "ringfleet/compat.py",
        "\n)\n\nDEFAULT_PROFILE",
        "\n" + TF214_PROFILE + ")\n\nDEFAULT_PROFILE",
    )
    edit(repo / "Pulumi.local.yaml", "profile: tf2.15", "profile: tf2.14")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")


def make_head(repo: Path) -> None:
    edit(repo / "Pulumi.local.yaml", "profile: tf2.14", "profile: tf2.15")
    edit(repo / "Pulumi.aws-dev.yaml", "    storage:\n", BIG_POOL + "    storage:\n")
    edit(repo / "jobs/digits.yaml", "processes: 4", "processes: 6")
    edit(
        repo / "stacks/aws_cluster.py",
        'performance_mode="generalPurpose"',
        'performance_mode="maxIO"',
    )
    lock = repo / "inventories/local/ringfleet.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(LOCKFILE, encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "head")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preview-repo")
    make_base(path)
    make_head(path)
    return path


@pytest.fixture(scope="module")
def report(repo):
    return preview(repo, "HEAD~1", [])


def section(text: str, part: str, env: str) -> list[str]:
    """The lines of `### env` under `## N. part`, up to the next heading of either level."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and part in line)
    begin = lines.index(f"### `{env}`", start) + 1
    end = next(
        (i for i in range(begin, len(lines)) if lines[i].startswith(("## ", "### "))), len(lines)
    )
    return lines[begin:end]


def block(lines: list[str], heading: str) -> str:
    """The fenced block that follows `heading` in a section."""
    at = lines.index(heading)
    opening = next(i for i in range(at, len(lines)) if lines[i].startswith("```"))
    closing = lines.index("```", opening + 1)
    return "\n".join(lines[opening + 1 : closing]) + "\n"


# --- the report's frame ---------------------------------------------------------


def test_report_starts_with_the_comment_marker(report):
    assert report.text.splitlines()[0] == MARKER


def test_report_has_the_three_parts_in_order(report):
    headings = [line for line in report.text.splitlines() if line.startswith("## ")]
    assert headings == ["## 1. Infrastructure", "## 2. Node software", "## 3. Jobs"]


@pytest.mark.parametrize("part", ["Infrastructure", "Node software", "Jobs"])
def test_every_env_of_either_revision_has_a_subsection(report, part):
    lines = report.text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and part in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    envs = [line for line in lines[start:end] if line.startswith("### ") and "`" in line]
    assert envs == ["### `aws-dev`", "### `local`", "### `onprem`"]


def test_node_software_starts_with_the_roles_of_every_env(report):
    lines = report.text.splitlines()
    start = lines.index("## 2. Node software")
    assert next(line for line in lines[start + 1 :] if line.startswith("### ")) == "### Roles"


def test_summary_row_of_aws_dev(report):
    assert (
        "| `aws-dev` | 1 replace, 4 add, 1 change | `big` added | 1 of 3 changed |"
        in report.text.splitlines()
    )


# --- 1. infrastructure: an added pool and a replaced EFS -----------------------------


def test_aws_dev_counts(report):
    assert "1 to replace, 4 to add, 1 to change." in section(
        report.text, "Infrastructure", "aws-dev"
    )


@pytest.mark.parametrize(
    "row",
    [
        "| add | `ringfleet:aws:NodePool` | `rf-dev-big` |  |",
        "| add | `aws:ec2/placementGroup:PlacementGroup` | `rf-dev-big-pg` |  |",
        "| add | `aws:ec2/instance:Instance` | `rf-dev-big-1` |  |",
        "| add | `aws:ec2/instance:Instance` | `rf-dev-big-2` |  |",
    ],
)
def test_added_pool_adds_its_resources(report, row):
    assert row in section(report.text, "Infrastructure", "aws-dev")


def test_efs_replacement_is_flagged_in_the_table(report):
    assert (
        "| replace | `aws:efs/fileSystem:FileSystem` | `rf-dev-storage-efs` "
        "| **protected, stateful** |"
    ) in section(report.text, "Infrastructure", "aws-dev")


def test_efs_replacement_names_the_input_that_forces_it(report):
    assert (
        "| `rf-dev-storage-efs` | `performanceMode` | `generalPurpose` | `maxIO` | yes |"
        in section(report.text, "Infrastructure", "aws-dev")
    )


def test_mount_target_of_the_replaced_efs_is_marked(report):
    assert (
        "| change | `aws:efs/mountTarget:MountTarget` | `rf-dev-storage-mt-0` "
        "| reads replaced rf-dev-storage-efs: may be replaced too |"
    ) in section(report.text, "Infrastructure", "aws-dev")


def test_flag_lists_exactly_the_efs(report):
    assert report.flagged == [
        "`aws-dev`: replace `aws:efs/fileSystem:FileSystem` `rf-dev-storage-efs` "
        "(protected, stateful)"
    ]


def test_flag_is_a_caution_block_saying_offline_estimate(report):
    lines = report.text.splitlines()
    at = lines.index("> [!CAUTION]")
    assert lines[at + 1] == (
        "> Protected or stateful resources are replaced or removed (offline estimate):"
    )


def test_infrastructure_says_it_is_an_offline_estimate(report):
    assert "Offline estimate:" in report.text


def test_local_containers_are_replaced_for_the_new_node_image(report):
    assert "3 to replace." in section(report.text, "Infrastructure", "local")


def test_local_container_replacements_are_not_flagged(report):
    assert all("`local`" not in line for line in report.flagged)


def test_static_env_creates_no_resources(report):
    assert section(report.text, "Infrastructure", "onprem") == [
        "",
        "No resources: provider `static` creates none.",
        "",
    ]


def test_flagged_report_exits_1(report):
    assert report.exit_code(allow_replace=False) == 1


def test_allow_replace_exits_0(report):
    assert report.exit_code(allow_replace=True) == 0


# --- 2. node software: the added pool and the TF bump --------------------------------


@pytest.mark.parametrize(
    "row",
    [
        "| `big` | pool | — | added |",
        "| `big` | software `profile` | — | `tf2.15` |",
        "| `big` | software `tensorflow` | — | `2.15.1` |",
        "| `big` | software `tensorflowPackage` | — | `tensorflow-cpu` |",
        "| `big` | role variable `horovod_version` | — | `0.28.1` |",
        "| `big` | role `common` | — | applied |",
    ],
)
def test_added_pool_lists_its_software_and_roles(report, row):
    assert row in section(report.text, "Node software", "aws-dev")


def test_added_cpu_pool_gets_no_nvidia_role(report):
    assert "| `big` | role `nvidia` | — | applied |" not in report.text


def test_unchanged_pools_of_aws_dev(report):
    assert "Unchanged: `cpu`, `gpu`." in section(report.text, "Node software", "aws-dev")


@pytest.mark.parametrize(
    "row",
    [
        "| `cpu` | software `profile` | `tf2.14` | `tf2.15` |",
        "| `cpu` | software `tensorflow` | `2.14.1` | `2.15.1` |",
        "| `cpu` | role variable `ringfleet_profile` | `tf2.14` | `tf2.15` |",
        "| `cpu` | role variable `tensorflow_version` | `2.14.1` | `2.15.1` |",
        "| `gpu` | software `tensorflow` | `2.14.1` | `2.15.1` |",
    ],
)
def test_tf_bump_is_a_version_change_per_pool(report, row):
    assert row in section(report.text, "Node software", "local")


def test_tf_bump_leaves_openmpi_alone(report):
    rows = [
        line for line in section(report.text, "Node software", "local") if "| software `" in line
    ]
    assert not any("`openmpi" in row for row in rows)


def test_tf_bump_changes_only_versions_not_roles(report):
    assert not any("| role `" in line for line in section(report.text, "Node software", "local"))


def test_nfs_server_role_is_on_one_host_of_onprem(report):
    effective = [
        line
        for line in section(report.text, "Node software", "onprem")
        if line.startswith("| `gpu`")
    ]
    assert effective[0].endswith("| common, nvidia, nfs_server (on gpu01) |")


def test_missing_lockfile_says_so(report):
    assert "Lockfile `inventories/aws-dev/ringfleet.lock`: no lockfile." in section(
        report.text, "Node software", "aws-dev"
    )


def test_added_lockfile_is_diffed_as_text(report):
    lines = section(report.text, "Node software", "local")
    assert block(lines, "Lockfile `inventories/local/ringfleet.lock`: added.") == (
        "--- base/inventories/local/ringfleet.lock\n"
        "+++ head/inventories/local/ringfleet.lock\n"
        "@@ -0,0 +1,2 @@\n"
        "+# ringfleet lock (fixture)\n"
        "+openmpi 4.1.4-3+b1\n"
    )


# --- 3. jobs: digits goes from 4 to 6 ranks -------------------------------------------

DIGITS_LOCAL_HOSTFILE_DIFF = """\
--- base/local/jobs/digits.yaml:hostfile
+++ head/local/jobs/digits.yaml:hostfile
@@ -1,3 +1,4 @@
-# ringfleet job digits (jobs/digits.yaml) on rf-local: 4 rank(s) on 2 node(s).
+# ringfleet job digits (jobs/digits.yaml) on rf-local: 6 rank(s) on 3 node(s).
 rf-local-cpu-1 slots=2
 rf-local-cpu-2 slots=2
+rf-local-cpu-3 slots=2
"""


def digits_diff(report, env: str) -> str:
    return block(section(report.text, "Jobs", env), "#### `jobs/digits.yaml`")


def test_job_np_change_diffs_the_hostfile(report):
    assert digits_diff(report, "local").startswith(DIGITS_LOCAL_HOSTFILE_DIFF)


@pytest.mark.parametrize(
    "line",
    [
        "--- base/local/jobs/digits.yaml:script",
        "+++ head/local/jobs/digits.yaml:script",
        "-# Run on rf-local-cpu-1 as rf: 4 rank(s) on 2 node(s).",
        "+# Run on rf-local-cpu-1 as rf: 6 rank(s) on 3 node(s).",
    ],
)
def test_job_np_change_diffs_the_launch_script(report, line):
    assert line in digits_diff(report, "local").splitlines()


def test_job_np_change_shows_in_the_launch_command(report):
    changed = [line for line in digits_diff(report, "local").splitlines() if "-np" in line]
    assert [line[0] + line.split("-np ")[1].split()[0] for line in changed] == [
        "-4", "-4", "+6", "+6"
    ]  # fmt: skip


def test_unchanged_job_is_listed(report):
    unchanged = "Unchanged: `jobs/digits-elastic.yaml`, `jobs/synthetic.yaml`."
    assert unchanged in section(report.text, "Jobs", "local")


def test_job_that_cannot_run_on_an_env_says_why(report):
    assert (
        "- `jobs/synthetic.yaml`: `ringfleet: error: jobs/synthetic.yaml: job.pool: unknown pool; "
        "Pulumi.onprem.yaml has pools gpu (got 'cpu')`"
    ) in section(report.text, "Jobs", "onprem")


# --- the command line -----------------------------------------------------------------


def test_cli_exits_1_on_the_flagged_replacement(repo):
    proc = run_cli("preview", "--base", "HEAD~1", "aws-dev", root=repo, timeout=300)
    assert (proc.returncode, proc.stderr.strip()) == (
        1,
        "ringfleet: preview: flagged `aws-dev`: replace `aws:efs/fileSystem:FileSystem` "
        "`rf-dev-storage-efs` (protected, stateful)",
    )


def test_cli_allow_replace_writes_the_report_and_exits_0(repo, tmp_path):
    out = tmp_path / "preview.md"
    proc = run_cli(
        "preview", "--base", "HEAD~1", "--allow-replace", "--output", str(out), "aws-dev",
        root=repo, timeout=300,
    )  # fmt: skip
    assert (proc.returncode, out.read_text().splitlines()[0]) == (0, MARKER), proc.stderr


def test_cli_bad_ref_is_one_line_exit_2(repo):
    proc = run_cli("preview", "--base", "no-such-ref", root=repo)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: --base: not a commit in this repository (got 'no-such-ref')",
    )


def test_cli_unknown_env_is_one_line_exit_2(repo):
    proc = run_cli("preview", "--base", "HEAD~1", "nosuch", root=repo)
    assert (proc.returncode, proc.stderr.strip().splitlines()[0]) == (
        2,
        "ringfleet: error: env: no Pulumi.nosuch.yaml in the working tree or HEAD~1 "
        "(known envs: aws-dev, local, onprem) (got 'nosuch')",
    )


def test_cli_live_without_pulumi_is_the_stackops_line(repo, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "RINGFLEET_ROOT": str(repo)}
    proc = subprocess.run(
        [sys.executable, "-m", "ringfleet.cli", "preview", "--base", "HEAD~1", "--live"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: pulumi: the pulumi CLI is not installed; install it: "
        "curl -fsSL https://get.pulumi.com | sh (or see https://www.pulumi.com/docs/install/)",
    )


def test_head_spec_error_is_unchecked_and_exits_1(repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    edit(broken / "Pulumi.onprem.yaml", "provider: static", "provider: nowhere")
    result = preview(broken, "HEAD", ["onprem"])
    assert (result.exit_code(allow_replace=True), len(result.unchecked)) == (1, 1)


def test_bad_ref_raises_before_any_work(repo):
    with pytest.raises(RingfleetError, match="not a commit"):
        preview(repo, "HEAD~5", [])


# --- the offline replacement table ---------------------------------------------------


def resource(typ: str, name: str, inputs: dict, **extra) -> dict:
    return {"urn": f"urn:test::{typ}::{name}", "type": typ, "name": name, "inputs": inputs, **extra}


EFS = "aws:efs/fileSystem:FileSystem"
INSTANCE = "aws:ec2/instance:Instance"
PROVIDER = "pulumi:providers:aws"


@pytest.mark.parametrize(
    ("typ", "path", "replaces"),
    [
        (EFS, "encrypted", True),
        (EFS, "performanceMode", True),
        (EFS, "creationToken", True),
        (EFS, "throughputMode", False),
        (EFS, "tags.Name", False),
        (INSTANCE, "rootBlockDevice.encrypted", True),
        (INSTANCE, "rootBlockDevice.volumeSize", False),
        (INSTANCE, "instanceMarketOptions.marketType", True),
        (INSTANCE, "instanceType", False),
        ("docker:index/volume:Volume", "labels[0].value", True),
        ("docker:index/container:Container", "memory", False),
        ("aws:unknown/thing:Thing", "anything", False),
    ],
)
def test_replacement_table(typ, path, replaces):
    assert graph.forces_replacement(typ, path) is replaces


def test_ignored_input_is_no_change():
    base = [resource(INSTANCE, "n1", {"ami": "ami-1"}, ignore_changes=["ami"])]
    head = [resource(INSTANCE, "n1", {"ami": "ami-2"}, ignore_changes=["ami"])]
    assert graph.diff_graphs(base, head) == []


def test_removed_protected_resource_is_flagged():
    base = [resource("aws:ec2/instance:Instance", "head", {}, protect=True)]
    assert [c.flagged for c in graph.diff_graphs(base, [])] == [True]


def test_new_region_replaces_the_efs_through_its_provider():
    prov = resource(PROVIDER, "aws", {"region": "eu-west-1"})
    ref = prov["urn"] + "::aws-id"
    base = [prov, resource(EFS, "efs", {"encrypted": True}, provider=ref, protect=True)]
    head = [{**prov, "inputs": {"region": "eu-central-1"}}, base[1]]
    efs = next(c for c in graph.diff_graphs(base, head) if c.resource.name == "efs")
    assert (efs.op, efs.flagged, efs.reason) == ("replace", True, "its provider aws is replaced")


def test_numbers_equal_after_a_json_round_trip_are_no_change():
    base = [resource("aws:ec2/securityGroup:SecurityGroup", "sg", {"fromPort": 22})]
    head = [resource("aws:ec2/securityGroup:SecurityGroup", "sg", {"fromPort": 22.0})]
    assert graph.diff_graphs(base, head) == []


# --- host patterns and roles ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "names", "hit"),
    [
        ("all", {"x"}, True),
        ("nvidia_gpu", {"pool_cpu", "cpu_nodes"}, False),
        ("cpu_nodes:gpu_nodes", {"gpu_nodes"}, True),
        ("ringfleet_nodes:&gpu_nodes", {"ringfleet_nodes", "cpu_nodes"}, False),
        ("ringfleet_nodes:!nfs_server", {"ringfleet_nodes", "nfs_server"}, False),
    ],
)
def test_host_patterns(pattern, names, hit):
    assert pattern_matches(pattern, names) is hit


def test_a_pool_without_nodes_still_gets_its_group_roles():
    inventory = {
        "all": {
            "children": {
                "pool_gpu": {"hosts": {}},
                "nvidia_gpu": {"children": {"pool_gpu": {}}},
            }
        }
    }
    assert pool_roles(inventory, [("nvidia_gpu", ["nvidia"])], ["gpu"]) == {"gpu": ["nvidia"]}


# --- --live: flags from pulumi's own events -------------------------------------------


def step_event(seq: int, op: str, typ: str, name: str, protect: bool):
    from pulumi.automation import events as ev

    urn = f"urn:pulumi:aws-dev::ringfleet::{typ}::{name}"
    old = ev.StepEventStateMetadata(typ, urn, f"{name}-id", "", "", protect=protect)
    meta = ev.StepEventMetadata(ev.OpType(op), urn, typ, "", old=old)
    return ev.EngineEvent(seq, 0, resource_pre_event=ev.ResourcePreEvent(meta))


def test_live_replacement_steps_of_one_resource_are_one_flag():
    events = [
        step_event(i, op, EFS, "rf-dev-storage-efs", protect=True)
        for i, op in enumerate(["create-replacement", "replace", "delete-replaced"])
    ]
    assert live_flags(events) == [
        "replace `aws:efs/fileSystem:FileSystem` `rf-dev-storage-efs` (protected, stateful)"
    ]


def test_live_replacement_of_a_plain_instance_is_not_flagged():
    assert live_flags([step_event(1, "replace", INSTANCE, "rf-dev-cpu-1", protect=False)]) == []


# --- 2. node software: what changed in the roles ----------------------------------------
#
# A second repository with the real roles, playbooks and site.yml. The head changes
# one thing of each kind in a different role, so each must show under its own role:

NODE_INPUTS = ["roles", "playbooks", "site.yml", "ansible.cfg"]
RENAMED_TASK = "Ensure the default locale file is written."
ADDED_TASK = "Ensure the message of the day names the cluster."
MOTD_TASK = f"""
- name: {ADDED_TASK}
  ansible.builtin.copy:
    dest: /etc/motd
    content: "ringfleet node\\n"
    owner: root
    group: root
    mode: "0644"
"""
# What a role change may carry that Markdown would read as markup.
HOSTILE_VALUE = "tick` two`` three``` <!-- open </details> pipe|end\nsecond line"
HOSTILE_TASK = "Ensure `x` | <!-- y --> </details> is ``` fine."
HOSTILE_NOTES = "notes.j2"
HOSTILE_FILE = "a<!--b<summary>&<details>.txt"
HOSTILE_TEMPLATE_LINES = "</details>\n```\n<!--\n## not a heading\n| a | b |\n"
BTL_OLD = "openmpi_btl: self,vader,tcp"
BTL_NEW = "openmpi_btl: self,tcp"
ABSL_OLD = "absl-py==2.5.1"
ABSL_NEW = "absl-py==2.5.2"
ABSL_HASH_OLD = "286e71c82c1a38e75bbcf185f9b37d0305ad7786535107cb49bf4df9ff2e1f95"
ASTUNPARSE_HASH_OLD = "5ad93a8456f0d084c3456d059fd9a92cce667963232cbf763eac3bc5b7940872"


def make_kinds_head(repo: Path) -> None:
    roles = repo / "roles"
    tasks = roles / "common/tasks/main.yml"
    edit(tasks, "- name: Ensure the default locale is set.", f"- name: {RENAMED_TASK}")
    tasks.write_text(tasks.read_text(encoding="utf-8") + MOTD_TASK, encoding="utf-8")
    edit(
        roles / "ssh_mesh/templates/sshd_config.conf.j2",
        "PasswordAuthentication no\n",
        "PasswordAuthentication no\nMaxStartups 100:30:200\n",
    )
    edit(roles / "nfs_server/vars/bookworm.yml", 'nfs-ganesha: "4.3-2"', 'nfs-ganesha: "4.3-3"')
    lock = roles / "tensorflow/files/requirements-tf2.15-cpu.txt"
    edit(lock, ABSL_OLD, ABSL_NEW)
    edit(lock, ABSL_HASH_OLD, "0" * 64)
    edit(lock, ASTUNPARSE_HASH_OLD, "1" * 64)
    mkl = roles / "mkl"
    append(mkl / "defaults/main.yml", yaml.safe_dump({"mkl_hostile": HOSTILE_VALUE}, width=1000))
    append(
        mkl / "tasks/main.yml",
        yaml.safe_dump([{"name": HOSTILE_TASK, "ansible.builtin.debug": {"msg": "x"}}]),
    )
    append(mkl / "templates/ringfleet-threads.sh.j2", HOSTILE_TEMPLATE_LINES)
    # Context lines (a leading space) could close a fence or open HTML; `+` lines cannot.
    notes = mkl / "templates" / HOSTILE_NOTES
    notes.write_text("one more line\n" + notes.read_text(encoding="utf-8"), encoding="utf-8")
    (mkl / "files" / HOSTILE_FILE).parent.mkdir(exist_ok=True)
    (mkl / "files" / HOSTILE_FILE).write_text("x\n", encoding="utf-8")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


@pytest.fixture(scope="module")
def node_base(tmp_path_factory) -> Path:
    """The project with its real roles, playbooks and site.yml, committed once."""
    path = tmp_path_factory.mktemp("preview-roles-base")
    copy_project(path)
    shutil.rmtree(path / "playbooks")
    for name in NODE_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, path / name)
    (path / "roles/mkl/templates" / HOSTILE_NOTES).write_text(
        HOSTILE_TEMPLATE_LINES, encoding="utf-8"
    )
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "base")
    return path


def scenario(node_base: Path, dest: Path, change) -> Path:
    """A copy of `node_base` whose head commit is `change(repo)`."""
    shutil.copytree(node_base, dest)
    change(dest)
    git(dest, "add", ".")
    git(dest, "commit", "-q", "-m", "head")
    return dest


@pytest.fixture(scope="module")
def btl_repo(node_base, tmp_path_factory) -> Path:
    """The issue's example: only the MPI transports of every node change."""

    def change(repo: Path) -> None:
        edit(repo / "roles/openmpi/defaults/main.yml", BTL_OLD, BTL_NEW)

    return scenario(node_base, tmp_path_factory.mktemp("btl") / "repo", change)


@pytest.fixture(scope="module")
def btl_report(btl_repo):
    return preview(btl_repo, "HEAD~1", [])


@pytest.fixture(scope="module")
def kinds_report(node_base, tmp_path_factory):
    repo = scenario(node_base, tmp_path_factory.mktemp("kinds") / "repo", make_kinds_head)
    return preview(repo, "HEAD~1", [])


@pytest.fixture(scope="module")
def readme_report(node_base, tmp_path_factory):
    def change(repo: Path) -> None:
        append(repo / "roles/horovod/README.md", "\nA line of documentation only.\n")

    return preview(
        scenario(node_base, tmp_path_factory.mktemp("readme") / "repo", change), "HEAD~1", []
    )


def roles_part(text: str) -> list[str]:
    """The lines of `### Roles` under `## 2. Node software`."""
    lines = text.splitlines()
    begin = lines.index("### Roles", lines.index("## 2. Node software")) + 1
    end = next(i for i in range(begin, len(lines)) if lines[i].startswith(("## ", "### ")))
    return lines[begin:end]


def role_block(text: str, role: str) -> list[str]:
    """The lines under `#### `role`: ...` in the Roles part, up to the next role."""
    lines = roles_part(text)
    begin = next(i for i, line in enumerate(lines) if line.startswith(f"#### `{role}`"))
    end = next(
        (i for i in range(begin + 1, len(lines)) if lines[i].startswith("#### ")), len(lines)
    )
    return lines[begin:end]


def summary_cell(text: str, env: str) -> str:
    """The node-software cell of `env`'s row in the summary table."""
    row = next(line for line in text.splitlines() if line.startswith(f"| `{env}` |"))
    return row.split(" | ")[2]


def image_tags(repo: Path, rev: str, env: str) -> dict[str, str]:
    """Each pool's node image tag, from the revision's files (HEAD: the working tree)."""
    from ringfleet.preview.revision import export_revision, resolve_base
    from ringfleet.providers.docker.images import node_image_tag
    from ringfleet.spec import load_spec

    root = repo
    if rev != "HEAD":
        root = repo.parent / f"export-{rev.replace('~', '-')}"
        if not root.exists():
            root.mkdir()
            export_revision(repo, resolve_base(repo, rev), root)
    spec = load_spec(env, root)
    return {name: node_image_tag(spec, pool, root) for name, pool in spec.pools.items()}


# The "done when": openmpi_btl from self,vader,tcp to self,tcp.


def test_btl_change_names_the_role_and_what_it_changes(btl_report):
    assert role_block(btl_report.text, "openmpi")[:1] == ["#### `openmpi`: 1 variable"]


def test_btl_change_is_the_variable_base_to_head(btl_report):
    assert "- `openmpi_btl` (`defaults/main.yml`): `self,vader,tcp` -> `self,tcp`" in role_block(
        btl_report.text, "openmpi"
    )


def test_btl_change_reaches_every_pool_of_every_env(btl_report):
    assert (
        "Reaches: `aws-dev`: `cpu`, `gpu`; `local`: `cpu`, `gpu`; `onprem`: `gpu`."
        in role_block(btl_report.text, "openmpi")
    )


def test_btl_change_is_the_only_role_change(btl_report):
    assert [line for line in roles_part(btl_report.text) if line.startswith("#### ")] == [
        "#### `openmpi`: 1 variable"
    ]


@pytest.mark.parametrize(
    ("env", "cell"),
    [
        ("aws-dev", "openmpi: 1 variable"),
        ("local", "openmpi: 1 variable; node image rebaked"),
        ("onprem", "openmpi: 1 variable"),
    ],
)
def test_btl_change_is_in_the_summary_row(btl_report, env, cell):
    assert summary_cell(btl_report.text, env) == cell


def test_btl_change_lists_the_pools_it_reaches_per_env(btl_report):
    assert "- `openmpi` on `cpu`, `gpu`: 1 variable" in section(
        btl_report.text, "Node software", "local"
    )


@pytest.mark.parametrize("pool", ["cpu", "gpu"])
def test_btl_change_shows_the_image_tag_before_and_after(btl_repo, btl_report, pool):
    old, new = (
        image_tags(btl_repo, "HEAD~1", "local")[pool],
        image_tags(btl_repo, "HEAD", "local")[pool],
    )
    assert old != new
    assert f"| `{pool}` | `{old}` | `{new}` |" in section(btl_report.text, "Node software", "local")


def test_btl_image_tag_is_the_one_the_containers_are_replaced_for(btl_repo, btl_report):
    new = image_tags(btl_repo, "HEAD", "local")["cpu"]
    rows = [
        line
        for line in section(btl_report.text, "Infrastructure", "local")
        if "| `image` |" in line
    ]
    assert rows and all(line.split(" | ")[3] == f"`{new}`" for line in rows)


# One change of each kind, each in its own role.


def test_task_changes_are_counted_per_role(kinds_report):
    assert role_block(kinds_report.text, "common")[0] == "#### `common`: 2 tasks"


@pytest.mark.parametrize(
    "line",
    [
        f"- renamed (`tasks/main.yml`): `Ensure the default locale is set.` -> `{RENAMED_TASK}`",
        f"- added (`tasks/main.yml`): `{ADDED_TASK}`",
    ],
)
def test_tasks_are_listed_by_name(kinds_report, line):
    assert line in role_block(kinds_report.text, "common")


def test_summary_row_says_what_moved_per_role(kinds_report):
    assert summary_cell(kinds_report.text, "aws-dev") == (
        "common: 2 tasks; mkl: 1 variable, 1 task, 2 templates, 1 file; ssh_mesh: 1 template; "
        "tensorflow: 2 Python pins"
    )


def test_template_change_is_a_folded_diff(kinds_report):
    lines = role_block(kinds_report.text, "ssh_mesh")
    at = lines.index("<details><summary>template templates/sshd_config.conf.j2: changed</summary>")
    assert "+MaxStartups 100:30:200" in lines[at : lines.index("</details>", at)]


def test_template_change_reaches_every_pool(kinds_report):
    assert (
        "Reaches: `aws-dev`: `cpu`, `gpu`; `local`: `cpu`, `gpu`; `onprem`: `gpu`."
        in role_block(kinds_report.text, "ssh_mesh")
    )


def test_debian_pin_change_is_package_base_head(kinds_report):
    assert "| `nfs-ganesha` | `4.3-2` | `4.3-3` |" in role_block(kinds_report.text, "nfs_server")


def test_debian_pin_change_reaches_only_the_nfs_server_host(kinds_report):
    assert "Reaches: `onprem`: `gpu` (on `gpu01`)." in role_block(kinds_report.text, "nfs_server")


@pytest.mark.parametrize(
    ("env", "listed"), [("onprem", True), ("local", False), ("aws-dev", False)]
)
def test_debian_pin_change_is_listed_only_on_its_env(kinds_report, env, listed):
    lines = section(kinds_report.text, "Node software", env)
    assert ("- `nfs_server` on `gpu` (on `gpu01`): 1 Debian pin" in lines) is listed


@pytest.mark.parametrize(
    "row",
    [
        "| `absl-py` | `2.5.1` | `2.5.2` | changed |",
        "| `astunparse` | `1.6.3` | `1.6.3` | changed |",
    ],
)
def test_python_lock_change_is_package_version_and_hash(kinds_report, row):
    assert row in role_block(kinds_report.text, "tensorflow")


def test_python_lock_change_names_the_pools_that_install_the_lock(kinds_report):
    assert "Installed on: `aws-dev`: `cpu`; `local`: `cpu`." in role_block(
        kinds_report.text, "tensorflow"
    )


# Hostile values: what a role may hold must stay inside its code span or fence.

ALLOWED_HTML = re.compile(
    r"^(<!-- ringfleet-preview -->|<details><summary>[^<]*</summary>|</details>)\n?$"
)


@pytest.fixture(scope="module")
def kinds_tokens(kinds_report):
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").parse(kinds_report.text)


def inline_children(tokens):
    return [child for t in tokens if t.type == "inline" for child in t.children or []]


def test_hostile_values_make_no_html(kinds_tokens):
    html = [t.content for t in kinds_tokens if t.type == "html_block"]
    html += [t.content for t in inline_children(kinds_tokens) if t.type == "html_inline"]
    assert [h for h in html if not ALLOWED_HTML.match(h)] == []


def test_every_details_block_closes(kinds_tokens):
    html = [t.content.strip() for t in kinds_tokens if t.type == "html_block"]
    assert sum(h.startswith("<details>") for h in html) == html.count("</details>") > 0


def test_hostile_value_is_one_code_span(kinds_tokens):
    spans = [t.content for t in inline_children(kinds_tokens) if t.type == "code_inline"]
    assert HOSTILE_VALUE.replace("\n", "\\n") in spans


def test_hostile_task_name_is_one_code_span(kinds_tokens):
    spans = [t.content for t in inline_children(kinds_tokens) if t.type == "code_inline"]
    assert HOSTILE_TASK in spans


def test_hostile_template_stays_in_its_fence(kinds_tokens):
    fences = [t.content for t in kinds_tokens if t.type == "fence"]
    assert any("+</details>\n+```\n+<!--\n+## not a heading\n" in f for f in fences)


def test_hostile_context_lines_stay_in_their_fence(kinds_tokens):
    fences = [t.content for t in kinds_tokens if t.type == "fence"]
    assert any("+one more line\n </details>\n ```\n <!--\n" in f for f in fences)


def test_hostile_file_name_is_text_in_its_summary(kinds_tokens):
    html = [t.content for t in kinds_tokens if t.type == "html_block"]
    assert any("a&lt;!--b&lt;summary&gt;&amp;&lt;details&gt;.txt" in h for h in html)


def test_hostile_template_makes_no_heading(kinds_tokens):
    headings = [
        kinds_tokens[i + 1].content for i, t in enumerate(kinds_tokens) if t.type == "heading_open"
    ]
    assert "not a heading" not in headings


# A README is documentation: it cannot reach a node.


def test_readme_only_change_has_no_role_change(readme_report):
    assert "No changes that reach a node." in roles_part(readme_report.text)


def test_readme_only_change_is_listed_as_not_reaching_nodes(readme_report):
    assert (
        "Changed but cannot reach a node (the rule of `ringfleet/converge/nodefiles.py`), "
        "so not counted: "
        "`roles/horovod/README.md`."
    ) in roles_part(readme_report.text)


@pytest.mark.parametrize("env", ["aws-dev", "onprem"])
def test_readme_only_change_is_no_node_software_change(readme_report, env):
    assert summary_cell(readme_report.text, env) == "no changes"


def test_readme_only_change_names_no_role_on_the_local_env(readme_report):
    assert "horovod" not in summary_cell(readme_report.text, "local")
