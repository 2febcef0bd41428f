"""The node lock, drift tables, the perf gate's arithmetic and verify's Markdown, without Docker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ringfleet.checks import lock as lockmod
from ringfleet.checks import perfgate
from ringfleet.checks.verify import Case, Report, SuiteResult, markdown, parse_junit
from ringfleet.errors import RingfleetError
from ringfleet.jobs.spec import load_job
from ringfleet.spec import load_spec
from tests.conftest import ROOT, run_cli

DEBIAN = {"libc6:amd64": "2.36-9", "openmpi-bin": "4.1.4-3+b1", "less": "590-2"}
PYTHON = {"horovod": "0.28.1", "numpy": "1.26.4", "six": "1.17.0", "tensorflow-cpu": "2.15.1"}
MCA = "/etc/openmpi/openmpi-mca-params.conf"
FILES = {MCA: "a" * 64, "/opt/ringfleet/wheels/horovod.whl": "b" * 64}
HELD = ("openmpi-bin",)


def facts(node: str, pool: str = "cpu", **changes) -> lockmod.NodeFacts:
    base = dict(
        node=node,
        pool=pool,
        os="Debian GNU/Linux 12 (bookworm)",
        debian_version="12.8",
        kernel="6.1.0-28-amd64",
        debian=dict(DEBIAN),
        python=dict(PYTHON),
        files=dict(FILES),
        held=HELD,
    )
    base.update(changes)
    return lockmod.NodeFacts(**base)


def cluster(*nodes: lockmod.NodeFacts) -> dict[str, lockmod.NodeFacts]:
    return {f.node: f for f in nodes}


@pytest.fixture
def lock() -> dict:
    return lockmod.build_lock("local", cluster(facts("n1"), facts("n2")), {"cpu": "/opt/venv"})


# --- parsing what nodes print ---------------------------------------------------------------


def test_dpkg_lists_installed_and_held_packages_only() -> None:
    text = "ii  less=590-2\nhi  openmpi-bin=4.1.4-3+b1\nrc  old-thing=1.0\nun  never=\n"
    assert lockmod.parse_dpkg(text) == {"less": "590-2", "openmpi-bin": "4.1.4-3+b1"}


def test_freeze_names_are_normalized_and_url_installs_kept() -> None:
    text = "PyYAML==6.0.2\nopt_einsum==3.4.0\nfoo @ file:///tmp/foo.whl\n# comment\n"
    assert lockmod.parse_freeze(text) == {
        "foo": "file:///tmp/foo.whl",
        "opt-einsum": "3.4.0",
        "pyyaml": "6.0.2",
    }


def test_dpkg_held_packages_are_the_installed_ones_with_hold_wanted() -> None:
    text = "ii  less=590-2\nhi  openmpi-bin=4.1.4-3+b1\nhc  gone=1.0\n"
    assert lockmod.parse_held(text) == ("openmpi-bin",)


def test_sha256sum_lines_map_path_to_digest() -> None:
    text = f"{'c' * 64}  /etc/b.conf\n{'d' * 64}  /etc/a.conf\nsha256sum: /x/*.whl: No such file\n"
    assert lockmod.parse_sha256sum(text) == {"/etc/a.conf": "d" * 64, "/etc/b.conf": "c" * 64}


@pytest.mark.parametrize("path", ["/etc/ssh/ssh_host_ed25519_key", "/etc/hosts", "known_hosts"])
def test_node_files_leave_out_what_differs_per_node(path: str) -> None:
    assert not any(path in p for p in lockmod.NODE_FILES)


@pytest.mark.parametrize(
    ("line", "version"),
    [
        ("horovod @ file:///opt/ringfleet/wheels/horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
         "#sha256=43cd", "0.28.1"),
        ("my_pkg @ file:///w/my.pkg-1.2-py3-none-any.whl", "1.2"),
        ("other @ file:///w/horovod-0.28.1-cp311-cp311-linux_x86_64.whl", "file:///w/horovod-0.28.1-cp311-cp311-linux_x86_64.whl"),
        ("foo @ git+https://example.org/foo.git@v1", "git+https://example.org/foo.git@v1"),
    ],
)  # fmt: skip
def test_freeze_url_install_of_a_wheel_keeps_its_version(line: str, version: str) -> None:
    assert list(lockmod.parse_freeze(line).values()) == [version]


def test_os_release_pretty_name() -> None:
    text = 'NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
    assert lockmod.parse_os_release(text) == "Debian GNU/Linux 12 (bookworm)"


def test_digest_ignores_order() -> None:
    assert lockmod.digest({"a": "1", "b": "2"}) == lockmod.digest({"b": "2", "a": "1"})


def test_key_debian_versions_match_multiarch_names() -> None:
    assert lockmod.key_versions(DEBIAN, ["libc6", "openmpi-bin"]) == {
        "libc6:amd64": "2.36-9",
        "openmpi-bin": "4.1.4-3+b1",
    }


# --- the lock file ----------------------------------------------------------------------------


def test_lock_has_one_entry_per_pool(lock) -> None:
    assert sorted(lock["pools"]) == ["cpu"]


def test_lock_names_no_node(lock) -> None:
    assert "n1" not in lockmod.dump_lock(lock).replace("\n", " ").split()


def test_lock_text_is_sorted_and_stable(lock) -> None:
    again = lockmod.build_lock("local", cluster(facts("n2"), facts("n1")), {"cpu": "/opt/venv"})
    assert lockmod.dump_lock(lock) == lockmod.dump_lock(again)


def test_lock_keys_are_sorted(lock) -> None:
    text = lockmod.dump_lock(lock)
    assert text.index("debian:") < text.index("kernel:") < text.index("python:")


def test_lock_round_trips(tmp_path: Path, lock) -> None:
    path = lockmod.write_lock(tmp_path / "ringfleet.lock", lock)
    assert lockmod.read_lock(path) == lock


def test_lock_keeps_pools_without_nodes() -> None:
    kept = {"gpu": {"os": "x", "kernel": "y", "debian": {}, "python": {}}}
    built = lockmod.build_lock("local", cluster(facts("n1")), {"cpu": "/v"}, keep=kept)
    assert sorted(built["pools"]) == ["cpu", "gpu"]


def test_missing_lock_reads_as_none(tmp_path: Path) -> None:
    assert lockmod.read_lock(tmp_path / "ringfleet.lock") is None


# (lock text, the error line after `ringfleet: error: x.lock`)
BAD_LOCKS = [
    ("pools: [\n", ":2: invalid YAML: expected the node content, but found '<stream end>'"),
    ("- 1\n", ": must be a mapping with version, env and pools (got [1])"),
    ("version: 9\npools: {}\n", ": version: unsupported lock version (expected 1) (got 9)"),
    ("version: 1\n", ": pools: must be a mapping of pool name to entry (got nothing)"),
    (
        "version: 1\npools: {cpu: {os: a, kernel: b, debian: {}, python: {sha256: c}}}\n",
        ": pools.cpu.debian.sha256: must be a string (got nothing)",
    ),
]


@pytest.mark.parametrize(
    ("text", "line"), BAD_LOCKS, ids=["yaml", "list", "version", "no-pools", "no-digest"]
)
def test_corrupt_lock_is_one_line(tmp_path: Path, text: str, line: str) -> None:
    path = tmp_path / "x.lock"
    path.write_text(text)
    with pytest.raises(RingfleetError) as info:
        lockmod.read_lock(path, "x.lock")
    assert info.value.line() == "ringfleet: error: x.lock" + line


# --- drift ------------------------------------------------------------------------------------


def test_one_changed_package_is_exactly_one_drift(lock) -> None:
    changed = facts("n2", python={**PYTHON, "six": "1.16.0"})
    drifts = lockmod.lock_drift(lock, cluster(facts("n1"), changed))
    assert drifts == [lockmod.Drift("n2", "pip:six", "1.17.0", "1.16.0")]


def test_removed_debian_package_shows_as_absent(lock) -> None:
    debian = {k: v for k, v in DEBIAN.items() if k != "less"}
    drifts = lockmod.lock_drift(lock, cluster(facts("n1", debian=debian), facts("n2")))
    assert drifts == [lockmod.Drift("n1", "deb:less", "590-2", lockmod.ABSENT)]


def test_added_package_shows_as_absent_in_the_lock(lock) -> None:
    python = {**PYTHON, "torch": "2.3.0"}
    drifts = lockmod.lock_drift(lock, cluster(facts("n1"), facts("n2", python=python)))
    assert drifts == [lockmod.Drift("n2", "pip:torch", lockmod.ABSENT, "2.3.0")]


def test_new_kernel_on_every_node_is_a_drift_per_node(lock) -> None:
    nodes = cluster(facts("n1", kernel="6.1.0-30"), facts("n2", kernel="6.1.0-30"))
    assert [(d.node, d.item) for d in lockmod.lock_drift(lock, nodes)] == [
        ("n1", "kernel"),
        ("n2", "kernel"),
    ]


def test_changed_config_file_is_exactly_one_drift(lock) -> None:
    changed = facts("n1", files={**FILES, MCA: "e" * 64})
    assert lockmod.lock_drift(lock, cluster(changed, facts("n2"))) == [
        lockmod.Drift("n1", f"file:{MCA}", "a" * 64, "e" * 64)
    ]


def test_released_hold_is_exactly_one_drift(lock) -> None:
    drifts = lockmod.lock_drift(lock, cluster(facts("n1"), facts("n2", held=())))
    assert drifts == [lockmod.Drift("n2", "hold:openmpi-bin", lockmod.HELD, lockmod.ABSENT)]


def test_lock_without_files_and_holds_reports_no_drift_on_them(lock) -> None:
    # A lock written before ringfleet recorded files and holds.
    del lock["pools"]["cpu"]["files"], lock["pools"]["cpu"]["held"]
    nodes = cluster(facts("n1", files={}), facts("n2", held=()))
    assert lockmod.lock_drift(lock, nodes) == []


def test_lock_trimmed_to_digests_still_catches_drift(lock) -> None:
    del lock["pools"]["cpu"]["python"]["packages"]
    changed = facts("n2", python={**PYTHON, "six": "1.16.0"})
    drifts = lockmod.lock_drift(lock, cluster(facts("n1"), changed))
    assert [(d.node, d.item) for d in drifts] == [("n2", "pip:sha256")]


def test_pool_missing_from_the_lock_is_compared_with_its_peers(lock) -> None:
    nodes = cluster(facts("n1"), facts("g1", pool="gpu"), facts("g2", pool="gpu", kernel="k2"))
    assert lockmod.lock_drift(lock, nodes) == [
        lockmod.Drift("g2", "kernel", "6.1.0-28-amd64", "k2", "peers")
    ]


def test_peers_majority_is_the_reference() -> None:
    nodes = cluster(facts("a"), facts("b"), facts("c", python={**PYTHON, "numpy": "2.0.0"}))
    assert lockmod.peer_drift(nodes) == [
        lockmod.Drift("c", "pip:numpy", "1.26.4", "2.0.0", "peers")
    ]


def test_peers_tie_takes_the_first_node() -> None:
    nodes = cluster(facts("a"), facts("b", python={**PYTHON, "numpy": "2.0.0"}))
    assert lockmod.peer_drift(nodes) == [
        lockmod.Drift("b", "pip:numpy", "1.26.4", "2.0.0", "peers")
    ]


def test_identical_peers_have_no_drift() -> None:
    assert lockmod.peer_drift(cluster(facts("a"), facts("b"), facts("c"))) == []


def test_drift_markdown_table() -> None:
    drifts = [
        lockmod.Drift("n2", "pip:six", "1.17.0", "1.16.0"),
        lockmod.Drift("n3", "deb:less", "590-2", "(absent)", "peers"),
    ]
    assert lockmod.drift_markdown(drifts) == (
        "| node | item | locked | found |\n"
        "|---|---|---|---|\n"
        "| `n2` | `pip:six` | `1.17.0` | `1.16.0` |\n"
        "| `n3` | `deb:less` | `590-2 (pool peers)` | `(absent)` |\n"
    )


# --- the perf gate ----------------------------------------------------------------------------

ENTRY = {"value": 10.0, "ranks": 3}


@pytest.mark.parametrize(
    ("value", "entry", "ranks", "verdict"),
    [
        (5.0, None, 3, ("recorded", None)),
        (9.0, ENTRY, 3, ("ok", 0.9)),
        (8.0, ENTRY, 3, ("ok", 0.8)),
        (7.9, ENTRY, 3, ("below", 0.79)),
        (9.0, ENTRY, 2, ("stale", None)),
    ],
    ids=["first-run-records", "within", "at-tolerance", "below", "other-rank-count"],
)
def test_judge(value: float, entry, ranks: int, verdict) -> None:
    got = perfgate.judge(value, entry, ranks, 0.8)
    assert (got[0], None if got[1] is None else round(got[1], 2)) == verdict


@pytest.mark.parametrize("tolerance", [0, -0.5, 1.5])
def test_tolerance_outside_zero_one_is_refused(tolerance: float) -> None:
    with pytest.raises(RingfleetError) as info:
        perfgate.check_tolerance(tolerance)
    assert info.value.line().startswith("ringfleet: error: --tolerance: must be a fraction")


# (baselines text, the error line after `ringfleet: error: b.json`)
BAD_BASELINES = [
    ("{", ":1:2: invalid JSON: Expecting property name enclosed in double quotes"),
    ("[]", ": must be an object with a pools object (got [])"),
    (
        '{"pools": {"cpu": {"allreduce": {"value": -1}}}}',
        ": pools.cpu.allreduce.value: must be a positive number (got -1)",
    ),
]


@pytest.mark.parametrize(("text", "line"), BAD_BASELINES, ids=["json", "shape", "value"])
def test_corrupt_baselines_are_one_line(tmp_path: Path, text: str, line: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(RingfleetError) as info:
        perfgate.read_baselines(path, "b.json")
    assert info.value.line() == "ringfleet: error: b.json" + line


@pytest.mark.parametrize("bench", perfgate.BENCHMARKS, ids=lambda b: b.name)
def test_benchmark_job_is_a_valid_job_of_the_local_spec(tmp_path: Path, bench) -> None:
    spec = load_spec("local", ROOT)
    doc = perfgate.job_document(bench, "cpu", *perfgate.placement(spec.pools["cpu"]))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    job = load_job(path, spec, ROOT)
    assert (job.processes, job.entry_path.is_file()) == (len(spec.pools["cpu"].nodes), True)


# --- verify's report --------------------------------------------------------------------------

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="ringfleet.checks.suite.test_ssh" name="test_ssh_between_nodes[a-&gt;b]"/>
<testcase classname="ringfleet.checks.suite.test_ssh" name="test_ssh_between_nodes[b-&gt;a]">
<failure message="AssertionError: Host key verification failed.">trace</failure></testcase>
<testcase classname="ringfleet.checks.suite.test_gpu" name="test_cuda[a]">
<skipped type="pytest.skip" message="pool cpu has no NVIDIA GPU">skip</skipped></testcase>
</testsuite></testsuites>
"""


def test_junit_results_are_read_per_case(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    assert [(c.module, c.name, c.outcome) for c in parse_junit(path)] == [
        ("test_ssh", "test_ssh_between_nodes[a->b]", "passed"),
        ("test_ssh", "test_ssh_between_nodes[b->a]", "failed"),
        ("test_gpu", "test_cuda[a]", "skipped"),
    ]


@pytest.fixture
def report_md(tmp_path: Path) -> str:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    result = perfgate.PerfResult
    perf = [
        result("cpu", "allreduce", "busbw_gbit_s", "Gbit/s", 3, 2.0, 4.0, 0.5, "below"),
        result("cpu", "synthetic", "total_img_s", "img/s", 3, 90.0, 100.0, 0.9, "ok"),
    ]
    report = Report(
        "local",
        suite=SuiteResult(parse_junit(path), 1, 12.0),
        drift=[lockmod.Drift("b", "pip:six", "1.17.0", "1.16.0")],
        drift_against="inventories/local/ringfleet.lock",
        perf=perf,
    )
    return markdown(report)


def test_markdown_headline_says_failed_and_counts(report_md: str) -> None:
    assert report_md.splitlines()[:3] == [
        "## ringfleet verify `local`: ❌ failed",
        "",
        "node checks 1 passed, 1 failed, 1 skipped; drift 1 item(s); perf 1 of 2 within tolerance.",
    ]


def test_markdown_has_a_row_per_check(report_md: str) -> None:
    assert "| `test_ssh::test_ssh_between_nodes` ❌ | 1 | 1 | 0 |" in report_md.splitlines()


def test_markdown_lists_each_failure_with_its_node(report_md: str) -> None:
    assert (
        "- `test_ssh::test_ssh_between_nodes[b->a]`: AssertionError: Host key verification failed."
        in report_md.splitlines()
    )


def test_markdown_groups_skip_reasons(report_md: str) -> None:
    assert "- pool cpu has no NVIDIA GPU (1 check(s))" in report_md.splitlines()


def test_markdown_has_the_drift_table(report_md: str) -> None:
    assert "| `b` | `pip:six` | `1.17.0` | `1.16.0` |" in report_md.splitlines()


def test_markdown_has_the_perf_table(report_md: str) -> None:
    assert "| cpu | allreduce | 3 | 2 Gbit/s | 4 Gbit/s | 50% | below |" in report_md.splitlines()


def test_report_without_failures_passes() -> None:
    suite = SuiteResult([Case("test_os", "test_x[a]", "passed")], 0, 1.0)
    assert Report("local", suite=suite).passed


# --- bad input on the command line: one line, exit 2 -----------------------------------------


@pytest.fixture
def bare_root(tmp_path: Path) -> Path:
    """A project with the local spec and nothing else: no inventory, lock or baselines."""
    for name in ("Pulumi.yaml", "Pulumi.local.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _inventory(root: Path) -> Path:
    path = root / "inventories" / "local"
    path.mkdir(parents=True)
    (path / "hosts.yml").write_text("all: {}\n")
    return path


def _one_line(proc) -> tuple[int, int, bool]:
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, len(lines), "Traceback" in proc.stderr


@pytest.mark.parametrize("verb", ["verify", "lock"])
def test_unknown_env_is_one_line(verb: str) -> None:
    proc = run_cli(verb, "nosuchenv")
    assert _one_line(proc) == (2, 1, False), proc.stderr
    assert proc.stderr.startswith("ringfleet: error: Pulumi.nosuchenv.yaml: no such file")


@pytest.mark.parametrize("verb", ["verify", "lock"])
def test_missing_inventory_is_one_line(verb: str, bare_root: Path) -> None:
    proc = run_cli(verb, "local", root=bare_root)
    assert (*_one_line(proc), proc.stderr.split(" (got")[0]) == (
        2,
        1,
        False,
        "ringfleet: error: inventories/local/hosts.yml: no inventory; run `ringfleet up local` "
        "or `ringfleet inventory local --write`",
    ), proc.stderr


@pytest.mark.parametrize("verb", ["verify", "lock"])
def test_corrupt_lock_is_one_line_before_any_node_is_read(verb: str, bare_root: Path) -> None:
    (_inventory(bare_root) / "ringfleet.lock").write_text("version: 1\npools: 7\n")
    proc = run_cli(verb, "local", root=bare_root)
    assert (*_one_line(proc), proc.stderr.strip()) == (
        2,
        1,
        False,
        "ringfleet: error: inventories/local/ringfleet.lock: pools: must be a mapping of pool "
        "name to entry (got 7)",
    )


def test_corrupt_baselines_stop_verify_perf(bare_root: Path) -> None:
    (_inventory(bare_root) / "perf-baseline.json").write_text('{"pools": 1}')
    proc = run_cli("verify", "local", "--perf", root=bare_root)
    assert (*_one_line(proc), proc.stderr.strip()) == (
        2,
        1,
        False,
        "ringfleet: error: inventories/local/perf-baseline.json: must be an object with a pools "
        "object (got {'pools': 1})",
    )


def test_bad_tolerance_is_one_line(bare_root: Path) -> None:
    proc = run_cli("verify", "local", "--perf", "--tolerance", "80", root=bare_root)
    assert (*_one_line(proc), proc.stderr.strip()) == (
        2,
        1,
        False,
        "ringfleet: error: --tolerance: must be a fraction of the baseline in (0, 1], e.g. 0.8 "
        "(got 80.0)",
    )


def test_perf_on_aws_needs_what_up_writes() -> None:
    """aws nodes are reached like bare metal now; before `up` the inventory is missing."""
    proc = run_cli("verify", "aws-dev", "--perf", "--no-suite")
    assert (*_one_line(proc), proc.stderr.strip()) == (
        2,
        1,
        False,
        "ringfleet: error: inventories/aws-dev/hosts.yml: no inventory; run `ringfleet up "
        f"aws-dev` or `ringfleet inventory aws-dev --write` (got '{ROOT}/inventories/aws-dev/"
        "hosts.yml')",
    )


def test_inventory_without_nodes_is_one_line(bare_root: Path) -> None:
    _inventory(bare_root)
    proc = run_cli("verify", "local", root=bare_root)
    assert (*_one_line(proc), proc.stderr.strip()) == (
        2,
        1,
        False,
        "ringfleet: error: inventories/local/hosts.yml: no hosts in group ringfleet_nodes; "
        "is the cluster up?",
    )


def test_baselines_file_is_sorted_json(tmp_path: Path) -> None:
    data = {"version": 1, "pools": {"cpu": {"synthetic": {"value": 2}, "allreduce": {"value": 1}}}}
    path = perfgate.write_baselines(tmp_path / "b.json", data)
    assert path.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize(
    ("value", "text"), [(0.01234, "0.0123"), (4.567, "4.57"), (789.4, "789"), (1291.9, "1292")]
)
def test_perf_numbers_are_never_scientific(value: float, text: str) -> None:
    assert perfgate.number(value) == text
