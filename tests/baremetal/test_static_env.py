"""A static env end to end on simulated bare metal, through the CLI and the spec only.

Two hosts the fixture made (sshd, sudo, the admin `ops`, one shared volume at
/shared, h2's cluster interface eth1) are described in a Pulumi.<env>.yaml of a
scratch project; ringfleet reaches them only over SSH. The site is air-gapped: the
hosts' networks are internal (no PyPI, no Debian mirror), so the spec names the
wheelhouse and Debian repository `images export tf2.15 --wheels` / `--apt` wrote on
the controller, and every package comes from those. The tests run in file order
on one module-scoped pair, so the cold converge happens once: trust, cold up, re-up,
run, runs, lock, verify, up --check, then the destructive ones (wrong host key,
refused sudo, a host killed mid-job), which leave the pair unusable.

Run it under the Docker lock: `flock /tmp/rf-docker.lock .venv/bin/pytest
tests/baremetal/test_static_env.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ringfleet import paths
from ringfleet.images.wheels import SUMS_FILE
from ringfleet.nodes import RUNNING
from tests.baremetal.conftest import ADMIN, CLUSTER_SUBNET, SHARED_MOUNT
from tests.conftest import ROOT, report, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# tests/baremetal/conftest.py: the hosts' networks route nowhere but to each other.
AIR_GAPPED = True

ENV = "bm"
SUDO_ENV = "bm-sudo"
# A cold converge installs TensorFlow and builds Horovod: minutes, not seconds.
COLD_TIMEOUT = 3600
LOST_WITHIN_SECONDS = 60
# The job user's uid and gid on every host (roles/common: common_job_user_uid).
JOB_UID = 2000
JOB_USER = "rf"
HANG_JOB = """\
name: hang
pool: cpu
processes: 2
slots_per_node: 1
entry:
  script: hang.py
timeout: 15m
"""


def spec_text(name: str, hosts, key: Path, sources: dict[str, Path]) -> str:
    cluster = {
        "name": name,
        "provider": "static",
        "pools": [
            {
                "name": "cpu",
                "cpus": 2,
                "hosts": [
                    {"name": h.name.removeprefix("rf-bm-"), "address": h.address} for h in hosts
                ],
            }
        ],
        "storage": {"kind": "existing", "mount": SHARED_MOUNT},
        "ssh": {"admin_user": ADMIN, "key_file": str(key)},
        # No interface: h1 has the subnet on eth0, h2 on eth1.
        "network": {"subnet": CLUSTER_SUBNET, "admin_cidr": CLUSTER_SUBNET},
        "software": {"profile": "tf2.15", **{k: str(v) for k, v in sources.items()}},
    }
    return yaml.safe_dump({"config": {"ringfleet:cluster": cluster}}, sort_keys=False)


def rf(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_cli(*args, root=root, timeout=timeout, stdin=subprocess.DEVNULL)


def timed(
    root: Path, *args: str, timeout: float = 900
) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = rf(root, *args, timeout=timeout)
    return proc, time.monotonic() - started


def out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout[-3000:] + proc.stderr[-3000:]


def _exports(site: Path) -> list[subprocess.CompletedProcess]:
    """`images export tf2.15 --wheels` and `--apt`, side by side: each mostly waits on PyPI
    or the mirror (~25 s each), so together they take the time of one."""
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "ringfleet.cli", "images", "export", "tf2.15", kind,
             "-o", str(site / name), "--env", "local"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for kind, name in (("--wheels", "wheelhouse"), ("--apt", "apt-repo"))
    ]
    done = []
    for proc in started:
        stdout, stderr = proc.communicate(timeout=COLD_TIMEOUT)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return done


@pytest.fixture(scope="module")
def site_sources(tmp_path_factory, request) -> dict[str, Path]:
    """What an air-gapped site carries in: the tf2.15 node image's wheelhouse and Debian
    packages, exported on a machine with internet (here: the controller). The image is
    baked first when this engine has none (`make test`'s first tier leaves it)."""
    site = tmp_path_factory.mktemp("site-sources")
    exports = _exports(site)
    if any("is not built here" in proc.stderr for proc in exports):
        started = time.monotonic()
        built = run_cli("images", "build", "tf2.15", "--env", "local", timeout=COLD_TIMEOUT)
        assert built.returncode == 0, out(built)
        seconds = time.monotonic() - started
        report(request, f"static env: baked tf2.15 to export from in {seconds:.0f} s")
        exports = _exports(site)
    for proc in exports:
        assert proc.returncode == 0, out(proc)
        report(request, f"static env: {proc.stdout.splitlines()[0]}")
    return {"wheelhouse": site / "wheelhouse", "apt_repo": site / "apt-repo"}


@pytest.fixture(scope="module")
def project(tmp_path_factory, bare_pair, admin_key, site_sources) -> Path:
    """A scratch project: the roles and playbooks by link, jobs copied, the pair's spec."""
    root = tmp_path_factory.mktemp("static-env")
    for name in ("Pulumi.yaml", "ansible.cfg"):
        shutil.copy(ROOT / name, root / name)
    for name in ("site.yml", "playbooks", "roles", "templates", "collections"):
        (root / name).symlink_to(ROOT / name)
    # Copied: `run` refuses a job script whose real path leaves the project.
    shutil.copytree(ROOT / "jobs", root / "jobs")
    shutil.copy(ROOT / "tests" / "data" / "run" / "hang.py", root / "jobs" / "hang.py")
    (root / "jobs" / "hang2.yaml").write_text(HANG_JOB)
    spec = spec_text("rf-bm", bare_pair, admin_key.private, site_sources)
    (root / f"Pulumi.{ENV}.yaml").write_text(spec)
    return root


def known_hosts(root: Path) -> Path:
    return paths.known_hosts_path(root, ENV)


# -- trust ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrusted_up(project):
    return rf(project, "up", ENV)


def test_up_of_an_untrusted_host_is_one_line(untrusted_up) -> None:
    assert (untrusted_up.returncode, len(untrusted_up.stderr.strip().splitlines())) == (2, 1)


def test_up_of_an_untrusted_host_names_it_and_trust(untrusted_up, bare_pair) -> None:
    line = untrusted_up.stderr.strip()
    assert (f"h1 ({bare_pair[0].address}:22)" in line, f"ringfleet trust {ENV}" in line) == (
        True,
        True,
    ), line


@pytest.fixture(scope="module")
def trust_without_terminal(untrusted_up, project):
    return rf(project, "trust", ENV)


def test_trust_without_terminal_exits_2(trust_without_terminal) -> None:
    assert trust_without_terminal.returncode == 2, out(trust_without_terminal)


def test_trust_without_terminal_writes_nothing(trust_without_terminal, project) -> None:
    assert not known_hosts(project).exists()


def test_trust_without_terminal_shows_the_fingerprints(trust_without_terminal) -> None:
    assert len(re.findall(r"SHA256:\S+ \(new\)", trust_without_terminal.stdout)) >= 2


@pytest.fixture(scope="module")
def trusted(trust_without_terminal, project):
    return rf(project, "trust", ENV, "--yes")


def test_trust_yes_writes_every_hosts_keys(trusted, project, bare_metal, bare_pair) -> None:
    assert trusted.returncode == 0, out(trusted)
    expected = {line for h in bare_pair for line in bare_metal.known_hosts_lines(h).splitlines()}
    assert set(known_hosts(project).read_text().splitlines()) == expected


# -- converge, run, lock, verify -----------------------------------------------------


def spec_nodes(project: Path, *names: str) -> dict:
    """The hosts as ringfleet reaches them: SshNodes built from the spec."""
    from ringfleet.providers import for_spec
    from ringfleet.spec import load_spec

    return for_spec(load_spec(ENV, project)).nodes(list(names) or None)


@pytest.fixture(scope="module")
def site_ready(trusted, project):
    """What the site does for `storage.kind: existing`: give the job user (uid and gid
    2000, the common role's) the shared file system, as its admin, over SSH."""
    spec_nodes(project, "h1")["h1"].run(["chown", f"{JOB_UID}:{JOB_UID}", SHARED_MOUNT])


@pytest.fixture(scope="module")
def exported_wheel(site_sources) -> dict:
    """The Horovod wheel in the wheelhouse: its name and the sha256 its export recorded."""
    (record_dir,) = (site_sources["wheelhouse"] / "horovod").iterdir()
    digest, name = (record_dir / SUMS_FILE).read_text().split()
    return {"name": name, "sha256": digest}


# The air gap, asked without sending anything off the hosts' network: Docker's resolver
# on an internal network answers only for its containers (and its firewall drops the rest).
MIRRORS = ("deb.debian.org", "pypi.org", "files.pythonhosted.org")
RESOLVER_OPTIONS = "timeout:1 attempts:1"


@pytest.mark.parametrize("host", ["h1", "h2"])
def test_hosts_cannot_resolve_pypi_or_the_mirror(site_ready, project, host: str) -> None:
    # One try of 1 s per name: the resolver's defaults wait 60 s per host to say the same.
    argv = ["env", f"RES_OPTIONS={RESOLVER_OPTIONS}", "getent", "hosts", *MIRRORS]
    code, text = spec_nodes(project, host)[host].run(argv, check=False)
    assert (code, text.strip()) == (2, ""), text


@pytest.fixture(scope="module")
def cold_up(site_ready, trusted, project, request):
    proc, seconds = timed(project, "up", ENV, timeout=COLD_TIMEOUT)
    report(
        request, f"static env: cold up of 2 bare hosts in {seconds:.0f} s (rc {proc.returncode})"
    )
    return proc


def test_cold_up_converges(cold_up) -> None:
    assert cold_up.returncode == 0, out(cold_up)


@pytest.mark.parametrize("host", ["h1", "h2"])
def test_cold_up_installed_the_exported_wheel_without_building(
    cold_up, exported_wheel, project, host: str
) -> None:
    """No sdist was fetched (the build fetches it first) and the host's wheel is the export."""
    node = spec_nodes(project, host)[host]
    fetched = node.run(["test", "-e", "/opt/ringfleet/src/horovod-0.28.1.tar.gz"], check=False)[0]
    wheel = f"/opt/ringfleet/wheels/{exported_wheel['name']}"
    digest = node.run(["sha256sum", wheel])[1].split()[0]
    assert (fetched != 0, digest) == (True, exported_wheel["sha256"])


@pytest.fixture(scope="module")
def re_up(cold_up, project, request):
    proc, seconds = timed(project, "up", ENV, timeout=COLD_TIMEOUT)
    report(request, f"static env: re-up in {seconds:.0f} s")
    return proc


def test_apt_reads_only_the_site_repository(cold_up, project) -> None:
    policy = spec_nodes(project, "h1")["h1"].run(["apt-cache", "policy"])[1]
    found = set(re.findall(r"^\s+\d+ (\S+)", policy, re.M)) - {"/var/lib/dpkg/status"}
    sources = sorted(found)
    assert sources == ["file:/var/lib/ringfleet/apt-repo"], policy


def test_pip_reads_only_the_site_wheelhouse(cold_up, project) -> None:
    pip = ["/opt/ringfleet/venv/bin/pip", "config", "list", "--disable-pip-version-check"]
    text = spec_nodes(project, "h2")["h2"].run(pip)[1]
    found = sorted(line for line in text.splitlines() if "index" in line or "find-links" in line)
    assert found == [
        "global.find-links='/var/lib/ringfleet/wheelhouse'",
        "global.no-index='true'",
    ], text


def test_re_up_changes_nothing(re_up) -> None:
    assert (re_up.returncode, "ansible changed=0" in re_up.stdout) == (0, True), out(re_up)


def test_inventory_connects_as_the_sudo_admin(cold_up, project) -> None:
    inventory = yaml.safe_load(paths.inventory_path(project, ENV).read_text())
    h2 = inventory["all"]["children"]["pool_cpu"]["hosts"]["h2"]
    assert (h2["ansible_user"], h2["ansible_become"]) == (ADMIN, True)


def test_hosts_still_let_the_admin_in_after_converge(re_up, project) -> None:
    """ssh_mesh hardens sshd; the sudo admin ringfleet connects as must keep its key login."""
    found = spec_nodes(project)
    for node in found.values():
        node.close()  # a master connection from before the converge would hide a lock-out
    assert {name: node.state() for name, node in found.items()} == {"h1": RUNNING, "h2": RUNNING}


def test_job_user_reaches_the_other_host_over_the_mesh(re_up, project, bare_pair) -> None:
    h1 = spec_nodes(project, "h1")["h1"]
    code, text = h1.run(["ssh", bare_pair[1].address, "hostname"], user=JOB_USER)
    assert (code, text.strip()) == (0, bare_pair[1].name)


@pytest.mark.parametrize("host", ["h1", "h2"])
def test_mpi_is_given_the_cluster_subnet(re_up, project, host: str) -> None:
    """No `interface` in the spec: h1 has the subnet on eth0 and h2 on eth1, so Open MPI
    gets the subnet, which names the right device on each."""
    text = spec_nodes(project, host)[host].run(["cat", "/etc/openmpi/openmpi-mca-params.conf"])[1]
    assert re.findall(r"^btl_tcp_if_include = (\S+)$", text, re.M) == [CLUSTER_SUBNET]


def test_status_shows_both_hosts_running(re_up, project) -> None:
    proc = rf(project, "status", ENV)
    assert (proc.returncode, proc.stdout.count("running")) == (0, 2), out(proc)


@pytest.fixture(scope="module")
def digits(re_up, project, request):
    job = str(project / "jobs" / "digits.yaml")
    proc, seconds = timed(project, "run", ENV, job, timeout=1800)
    report(request, f"static env: digits across 2 bare hosts in {seconds:.0f} s")
    return proc


def test_digits_exits_zero(digits) -> None:
    assert digits.returncode == 0, out(digits)


def test_digits_reaches_target_accuracy(digits) -> None:
    found = re.search(r"val_accuracy=([0-9.]+) ranks=4", digits.stdout)
    assert found is not None and float(found.group(1)) >= 0.9, out(digits)


def test_runs_lists_the_digits_run(digits, project) -> None:
    proc = rf(project, "runs", ENV)
    run_id = re.search(r"run (digits-\S+):", digits.stdout).group(1)
    assert (proc.returncode, run_id in proc.stdout) == (0, True), out(proc)


@pytest.fixture(scope="module")
def locked(digits, project):
    return rf(project, "lock", ENV)


def test_lock_is_written(locked, project) -> None:
    assert (locked.returncode, paths.lock_path(project, ENV).is_file()) == (0, True), out(locked)


def test_verify_is_green(locked, project) -> None:
    proc = rf(project, "verify", ENV, timeout=1800)
    assert proc.returncode == 0, out(proc)


@pytest.fixture(scope="module")
def checked(locked, project):
    return rf(project, "up", ENV, "--check", timeout=COLD_TIMEOUT)


def test_up_check_passes(checked) -> None:
    assert checked.returncode == 0, out(checked)


def test_up_check_would_change_nothing_on_a_converged_env(checked) -> None:
    assert "nothing changed; a converge would change 0" in checked.stdout, out(checked)


def test_up_limit_converges_only_that_host(checked, project) -> None:
    proc = rf(project, "up", ENV, "--limit", "h2", timeout=COLD_TIMEOUT)
    assert (proc.returncode, "up bm: converged h2 (--limit), ansible changed=0" in proc.stdout) == (
        0,
        True,
    ), out(proc)


# -- destructive: wrong host key, refused sudo, a host lost mid-job ------------------


@pytest.fixture(scope="module")
def wrong_key(checked, project, bare_metal, bare_pair):
    """h1's keys recorded under h2's address: h2 now presents a key that does not match."""
    h1, h2 = bare_pair
    path = known_hosts(project)
    good = path.read_text()
    inventory_before = paths.inventory_path(project, ENV).read_text()
    path.write_text(bare_metal.known_hosts_lines(h1) + bare_metal.known_hosts_lines(h1, h2.address))
    try:
        proc = rf(project, "up", ENV)
    finally:
        path.write_text(good)
    return proc, inventory_before == paths.inventory_path(project, ENV).read_text()


def test_wrong_host_key_rewrites_no_inventory(wrong_key) -> None:
    _, unchanged = wrong_key
    assert unchanged


def test_wrong_host_key_is_one_line_naming_the_host(wrong_key, bare_pair) -> None:
    proc, _ = wrong_key
    lines = proc.stderr.strip().splitlines()
    assert (proc.returncode, len(lines), f"h2 ({bare_pair[1].address}:22)" in lines[0]) == (
        2,
        1,
        True,
    ), out(proc)


def test_wrong_host_key_converges_nothing(wrong_key) -> None:
    proc, _ = wrong_key
    assert "converge" not in proc.stdout + proc.stderr.split("error:")[0], out(proc)


@pytest.fixture(scope="module")
def sudo_refused(wrong_key, tmp_path_factory, bare_metal, admin_key, site_sources):
    """A third host whose admin may sudo only with a password, in an env of its own."""
    host = bare_metal.host("h3", sudo="password")
    root = tmp_path_factory.mktemp("static-sudo")
    for name in ("Pulumi.yaml", "ansible.cfg"):
        shutil.copy(ROOT / name, root / name)
    for name in ("site.yml", "playbooks", "roles", "templates", "collections"):
        (root / name).symlink_to(ROOT / name)
    spec = spec_text("rf-bm3", [host], admin_key.private, site_sources)
    (root / f"Pulumi.{SUDO_ENV}.yaml").write_text(spec)
    assert rf(root, "trust", SUDO_ENV, "--yes").returncode == 0
    return rf(root, "up", SUDO_ENV)


def test_refused_sudo_is_one_line_naming_the_host(sudo_refused) -> None:
    lines = sudo_refused.stderr.strip().splitlines()
    assert (sudo_refused.returncode, lines) == (
        2,
        [
            f"ringfleet: error: h3: admin user {ADMIN} may not run sudo without a password; "
            "ringfleet needs passwordless sudo (NOPASSWD) for it on every host"
        ],
    )


@pytest.fixture(scope="module")
def host_lost(sudo_refused, project, bare_metal, bare_pair):
    """Kill h2 while `hang` runs a rank on each host."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfleet.cli", "run", ENV, str(project / "jobs" / "hang2.yaml")],
        cwd=project,
        env={**os.environ, "RINGFLEET_ROOT": str(project)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "step 20" in line:
            break
    bare_metal.kill(bare_pair[1])
    killed = time.monotonic()
    try:
        rest, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    elapsed = time.monotonic() - killed
    h1 = spec_nodes(project, "h1")["h1"]
    _, ranks = h1.run(["pgrep", "-u", "rf", "-a", "python"], check=False)
    left = [line for line in ranks.splitlines() if line and not line.endswith("<defunct>")]
    trained = any("step 20" in line for line in lines)
    return proc.returncode, "".join(lines) + rest, elapsed if trained else None, left


def test_host_lost_exit_code(host_lost) -> None:
    code, output, _, _ = host_lost
    assert code == 125, output[-2000:]


def test_host_lost_is_named(host_lost) -> None:
    _, output, _, _ = host_lost
    assert "node h2 lost" in output, output[-2000:]


def test_host_lost_within_60_seconds(host_lost) -> None:
    _, output, elapsed, _ = host_lost
    assert elapsed is not None and elapsed < LOST_WITHIN_SECONDS, output[-2000:]


def test_host_lost_leaves_no_rank_on_the_other(host_lost) -> None:
    _, _, elapsed, left = host_lost
    assert (elapsed is not None, left) == (True, [])


def test_record_of_the_lost_run_names_the_host(host_lost, project) -> None:
    proc = rf(project, "runs", ENV)
    hang = [line for line in proc.stdout.splitlines() if line.startswith("hang-")]
    assert (len(hang), "node h2 lost" in hang[0] if hang else False) == (1, True), out(proc)
