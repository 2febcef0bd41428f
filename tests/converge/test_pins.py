"""Node software is pinned: Python locks with hashes, Debian packages at exact versions.

No Docker is needed. The locks and role files are parsed; the pin check of the
apt_pins role runs against localhost in check mode (this machine is Debian
bookworm, so apt-cache answers), where a fake pin must fail before any install.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ringfleet import compat
from ringfleet.providers.docker.baseimage import BASE_PACKAGES_FILE, record_packages
from tests.converge.test_roles import DATA, ROOT, _load, _playbook, _shown, _tasks

LOCK_DIR = ROOT / "roles" / "tensorflow" / "files"
LOCKS = sorted(LOCK_DIR.glob("requirements-*.txt"))
ACCELERATORS = ("cpu", "cuda")
# A requirement line of a lock: `name==version \`, then its `--hash=` lines.
PIN_LINE = re.compile(r"^(?P<name>[^\s=#\\]+)==(?P<version>[^\s;\\]+)")
# What the tensorflow role's parser takes as a pin; pip-compile writes canonical names.
CANONICAL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# Horovod's install_requires (setup.py of 0.28.1, without PyTorch) and the
# packaging tools its build runs with.
HOROVOD_REQUIREMENTS = ("cloudpickle", "packaging", "psutil", "pyyaml")
PACKAGING_TOOLS = ("pip", "setuptools", "wheel")

ROLES_DIR = ROOT / "roles"
APT_MODULES = {"ansible.builtin.apt", "apt", "ansible.builtin.package", "package"}
# Packages from NVIDIA's repository: the driver branch and CUDA release are in the
# package names and NCCL has an exact version, but which driver build a branch
# resolves to is not pinned: no GPU here to test one (see docs/pinning.md).
APT_PIN_EXEMPT = {"nvidia"}
# Roles whose versions come from the software profile, not vars/<release>.yml.
PROFILE_PINNED = {"openmpi"}
DEBIAN_VERSION = re.compile(r"^(\d+:)?[0-9][A-Za-z0-9.+~-]*$")
RELEASE = "bookworm"


def _id(value) -> str:
    """Test ids: a task's or entry's name, a profile's or path's name, else the value."""
    if isinstance(value, dict):
        return value["name"]
    return getattr(value, "name", str(value))


# --- Python locks -------------------------------------------------------------------


def _entries(path: Path) -> list[dict]:
    """Every requirement of a requirements file, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN_LINE.match(line)
        found.append(
            {
                "line": line,
                "name": m["name"] if m else line.split()[0],
                "version": m["version"] if m else None,
                "hashes": re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line),
            }
        )
    return found


def _pins(path: Path) -> dict[str, str]:
    return {e["name"]: e["version"] for e in _entries(path)}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]$", "", name)).lower()


LOCK_ENTRIES = [(lock.name, e) for lock in LOCKS for e in _entries(lock)]
INPUTS = [
    (lock.name, e)
    for lock in LOCKS
    if lock.with_suffix(".in").exists()
    for e in _entries(lock.with_suffix(".in"))
]
# GPU pools need the CUDA lock; profiles tested on CPU pools only have none.
PROFILE_LOCKS = [
    (p, accel) for p in compat.PROFILES for accel in ACCELERATORS if accel == "cpu" or p.gpu
]
LEGACY_KERAS_LOCKS = [(p, accel) for p, accel in PROFILE_LOCKS if p.legacy_keras]


def _lock(profile: compat.Profile, accel: str) -> Path:
    return LOCK_DIR / f"requirements-{profile.name}-{accel}.txt"


def test_there_are_locks():
    assert LOCKS


@pytest.mark.parametrize(("profile", "accel"), PROFILE_LOCKS, ids=_id)
def test_every_profile_has_a_lock(profile, accel):
    assert _lock(profile, accel).is_file()


@pytest.mark.parametrize("lock", LOCKS, ids=_id)
def test_lock_has_its_input(lock):
    assert lock.with_suffix(".in").is_file()


@pytest.mark.parametrize(("lock", "entry"), LOCK_ENTRIES, ids=_id)
def test_lock_line_is_an_exact_pin_with_a_hash(lock, entry):
    assert entry["version"] and entry["hashes"], entry["line"]


@pytest.mark.parametrize(("lock", "entry"), LOCK_ENTRIES, ids=_id)
def test_lock_name_is_canonical(lock, entry):
    assert CANONICAL_NAME.match(entry["name"]), entry["name"]


@pytest.mark.parametrize("lock", LOCKS, ids=_id)
def test_lock_names_only_pypi(lock):
    text = lock.read_text(encoding="utf-8")
    options = r"^\s*(-i|--index-url|--extra-index-url|-f|--find-links)\b|file://"
    assert not re.search(options, text, re.M)


@pytest.mark.parametrize(("lock", "entry"), INPUTS, ids=_id)
def test_lock_keeps_the_pin_of_its_input(lock, entry):
    assert _pins(LOCK_DIR / lock).get(_canonical(entry["name"])) == entry["version"]


@pytest.mark.parametrize(("profile", "accel"), PROFILE_LOCKS, ids=_id)
def test_lock_pins_the_profile_tensorflow(profile, accel):
    package = profile.tensorflow_package if accel == "cpu" else "tensorflow"
    assert _pins(_lock(profile, accel)).get(package) == profile.tensorflow


@pytest.mark.parametrize(("profile", "accel"), LEGACY_KERAS_LOCKS, ids=_id)
def test_lock_pins_the_profile_tf_keras(profile, accel):
    assert _pins(_lock(profile, accel)).get("tf-keras") == profile.legacy_keras


@pytest.mark.parametrize(("profile", "accel"), LEGACY_KERAS_LOCKS, ids=_id)
def test_lock_with_tf_keras_has_the_full_tensorflow_wheel(profile, accel):
    assert "tensorflow-cpu" not in _pins(_lock(profile, accel))


@pytest.mark.parametrize(("profile", "accel"), PROFILE_LOCKS, ids=_id)
def test_lock_pins_the_profile_mkl(profile, accel):
    assert _pins(_lock(profile, accel)).get("mkl") == profile.mkl


@pytest.mark.parametrize(
    ("profile", "accel", "name"),
    [(p, a, n) for p, a in PROFILE_LOCKS for n in HOROVOD_REQUIREMENTS + PACKAGING_TOOLS],
    ids=_id,
)
def test_lock_pins_what_the_horovod_build_needs(profile, accel, name):
    assert _pins(_lock(profile, accel)).get(name)


@pytest.mark.parametrize(("profile", "accel"), PROFILE_LOCKS, ids=_id)
def test_lock_leaves_horovod_to_its_hashed_sdist(profile, accel):
    assert "horovod" not in _pins(_lock(profile, accel))


@pytest.mark.parametrize("profile", compat.PROFILES, ids=_id)
def test_horovod_sdist_of_the_profile_has_a_sha256(profile):
    hashes = _load(ROLES_DIR / "horovod" / "defaults" / "main.yml")["horovod_sdist_sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", hashes.get(profile.horovod, ""))


# --- the Horovod patch ---------------------------------------------------------------------

HOROVOD_FILES = ROLES_DIR / "horovod" / "files"
PATCH = HOROVOD_FILES / "horovod-0.28.1-tf2.21.patch"
PATCHED_FILES = (
    "horovod/tensorflow/keras/__init__.py",
    "horovod/tensorflow/keras/callbacks.py",
    "horovod/tensorflow/xla_mpi_ops.cc",
)


def _patch_header() -> str:
    text = PATCH.read_text(encoding="utf-8")
    return text[: text.index("\n--- a/")]


@pytest.mark.parametrize(
    "fact", ["#4290", "HAVE_GPU", "highwayhash/arch_specific.h", "TF_USE_LEGACY_KERAS", "sha256"]
)
def test_patch_header_says_why(fact):
    assert fact in _patch_header()


def test_patch_changes_only_the_two_fixes():
    files = re.findall(r"^\+\+\+ b/(\S+)$", PATCH.read_text(encoding="utf-8"), re.M)
    assert tuple(files) == PATCHED_FILES


@pytest.mark.parametrize(
    ("profile", "patch"),
    [
        (profile, patch)
        for profile, patches in _load(ROLES_DIR / "horovod" / "defaults" / "main.yml")[
            "horovod_profile_patches"
        ].items()
        for patch in patches
    ],
)
def test_profile_patch_is_in_the_role(profile, patch):
    assert profile in {p.name for p in compat.PROFILES} and (HOROVOD_FILES / patch).is_file()


def _patches_for(**variables) -> list[str]:
    proc = _playbook(
        "-i", "localhost,", "-c", "local", str(DATA / "horovod_patches.yml"),
        "-e", json.dumps(variables), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )  # fmt: skip
    assert proc.returncode == 0, _shown(proc)
    text = proc.stdout
    result, _ = json.JSONDecoder().raw_decode(text[text.index("\n{") + 1 :])
    (task,) = result["plays"][0]["tasks"]
    return task["hosts"]["localhost"]["horovod_patches"]


@pytest.mark.parametrize(
    ("variables", "patches"),
    [
        ({"ringfleet_profile": "tf2.15"}, []),
        ({"ringfleet_profile": "tf2.21"}, [PATCH.name]),
        ({"ringfleet_profile": "tf2.21", "horovod_gpu_operations": "NCCL"}, []),
    ],
    ids=["tf2.15", "tf2.21-cpu", "tf2.21-gpu"],
)
def test_horovod_patches_only_cpu_builds_of_the_profile(variables, patches):
    assert _patches_for(**variables) == patches


# --- Debian packages ---------------------------------------------------------------


def _all_role_tasks(role: str) -> list[tuple[str, dict]]:
    """(file, task) for every task of every task file of a role, blocks flattened."""
    found = []
    for path in sorted((ROLES_DIR / role / "tasks").glob("*.yml")):
        found.extend((path.name, t) for t in _tasks(_load(path)) if "block" not in t)
    return found


ALL_ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())


def _apt_installs(role: str) -> list[tuple[str, str]]:
    return [
        (role, t["name"])
        for _, t in _all_role_tasks(role)
        for module in APT_MODULES & t.keys()
        if any(k in (t[module] or {}) for k in ("name", "pkg", "deb"))
    ]


APT_INSTALLS = [item for role in ALL_ROLES for item in _apt_installs(role)]
PIN_INCLUDES = [
    (role, t)
    for role in ALL_ROLES
    for _, t in _all_role_tasks(role)
    if (t.get("ansible.builtin.include_role") or {}).get("name") == "apt_pins"
]


def _release_versions(role: str) -> dict[str, str]:
    path = ROLES_DIR / role / "vars" / f"{RELEASE}.yml"
    return (_load(path) or {}).get(f"{role}_debian_versions", {}) if path.exists() else {}


def _package_lists(role: str) -> dict[str, list[str]]:
    defaults = _load(ROLES_DIR / role / "defaults" / "main.yml") or {}
    return {k: v for k, v in defaults.items() if k.endswith("_packages") and isinstance(v, list)}


ROLE_PACKAGES = [
    (role, package)
    for role, _ in PIN_INCLUDES
    if role not in PROFILE_PINNED
    for packages in _package_lists(role).values()
    for package in packages
]
RELEASE_PINS = [
    (role, name, version) for role in ALL_ROLES for name, version in _release_versions(role).items()
]


@pytest.mark.parametrize(("role", "task"), APT_INSTALLS)
def test_only_apt_pins_installs_debian_packages(role, task):
    assert role == "apt_pins" or role in APT_PIN_EXEMPT, f"{role}: {task} installs without a pin"


def test_apt_pins_installs_name_equals_version():
    (install,) = [
        t for _, t in _all_role_tasks("apt_pins") if "name" in t.get("ansible.builtin.apt", {})
    ]
    assert install["ansible.builtin.apt"]["name"] == "{{ apt_pins_wanted }}"
    wanted = _load(ROLES_DIR / "apt_pins" / "vars" / "main.yml")["apt_pins_wanted"]
    assert "map('extract', apt_pins_versions)" in wanted and "map('join', '=')" in wanted


@pytest.mark.parametrize(("role", "task"), PIN_INCLUDES, ids=_id)
def test_pin_include_passes_packages_versions_and_where(role, task):
    passed = task.get("vars", {}).keys()
    assert {"apt_pins_packages", "apt_pins_versions", "apt_pins_pinned_in"} <= passed


@pytest.mark.parametrize(("role", "task"), PIN_INCLUDES, ids=_id)
def test_pin_include_reads_the_release_file_of_its_role(role, task):
    if role in PROFILE_PINNED:
        assert "openmpi_debian_version" in task["vars"]["apt_pins_versions"]
    else:
        assert f"{role}_debian_versions" in task["vars"]["apt_pins_versions"]
        assert (ROLES_DIR / role / "vars" / f"{RELEASE}.yml").is_file()


@pytest.mark.parametrize(("role", "package"), ROLE_PACKAGES)
def test_role_package_has_a_release_pin(role, package):
    assert package in _release_versions(role), f"roles/{role}/vars/{RELEASE}.yml lacks {package}"


@pytest.mark.parametrize(("role", "name", "version"), RELEASE_PINS)
def test_release_pin_is_an_exact_debian_version(role, name, version):
    assert isinstance(version, str) and DEBIAN_VERSION.match(version), version


@pytest.mark.parametrize(
    ("name", "versions"),
    sorted(
        {
            name: {r: v for r, n, v in RELEASE_PINS if n == name} for _, name, _ in RELEASE_PINS
        }.items()
    ),
)
def test_roles_pin_a_shared_package_alike(name, versions):
    assert len(set(versions.values())) == 1, versions


def test_openmpi_profile_pin_is_exact():
    assert all(DEBIAN_VERSION.match(p.openmpi_debian) for p in compat.PROFILES)


@pytest.mark.parametrize("profile", compat.PROFILES, ids=lambda p: p.name)
def test_horovod_pins_the_open_mpi_headers_of_the_profile(profile):
    # libopenmpi-dev must be the installed openmpi-bin's version, or apt refuses it.
    assert _release_versions("horovod")["libopenmpi-dev"] == profile.openmpi_debian


# --- the pin check, on this machine ------------------------------------------------------

FAKE_VERSION = "0.0-ringfleet-fake"
NO_SUCH_PACKAGE = "ringfleet-no-such-package"
PINNED_IN = "tests/pins.yml"


def _installed_version(package: str) -> str:
    proc = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", package],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def _apt_pins(packages: dict[str, str], **extra) -> subprocess.CompletedProcess:
    variables = {
        "rf_test_role": "apt_pins",
        "apt_pins_packages": list(packages),
        "apt_pins_versions": packages,
        "apt_pins_pinned_in": PINNED_IN,
        **extra,
    }
    return _playbook(
        "-i", "localhost,", "-c", "local", "--check",
        str(DATA / "apply_role.yml"), "-e", json.dumps(variables),
    )  # fmt: skip


def _ran(proc: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"^TASK \[apt_pins : (.*?)\] \*", proc.stdout, re.M)


def _skipped(proc: subprocess.CompletedProcess) -> set[str]:
    """Names of the apt_pins tasks the host skipped."""
    blocks = re.split(r"^TASK \[apt_pins : ", proc.stdout, flags=re.M)[1:]
    return {b.split("] ", 1)[0] for b in blocks if re.search(r"^skipping: ", b, re.M)}


def _failure(proc: subprocess.CompletedProcess) -> str:
    """The msg of the failed task (the JSON after `FAILED! =>`)."""
    text = proc.stdout[proc.stdout.index("FAILED! =>") + len("FAILED! =>") :]
    return json.JSONDecoder().raw_decode(text.lstrip())[0]["msg"]


@pytest.fixture(scope="module")
def unavailable_pin() -> subprocess.CompletedProcess:
    return _apt_pins({"bash": FAKE_VERSION, NO_SUCH_PACKAGE: "1.0"})


@pytest.fixture(scope="module")
def installed_pin() -> subprocess.CompletedProcess:
    return _apt_pins({"bash": _installed_version("bash")}, apt_pins_hold=False)


@pytest.fixture(scope="module")
def unheld_pin() -> subprocess.CompletedProcess:
    """bash at its installed version, to be held: this machine does not hold bash."""
    return _apt_pins({"bash": _installed_version("bash")})


@pytest.fixture(scope="module")
def unpinned_package() -> subprocess.CompletedProcess:
    return _playbook(
        "-i", "localhost,", "-c", "local", "--check", str(DATA / "apply_role.yml"),
        "-e", json.dumps({"rf_test_role": "apt_pins", "apt_pins_packages": ["bash"],
                          "apt_pins_pinned_in": PINNED_IN}),
    )  # fmt: skip


def test_unavailable_pin_fails(unavailable_pin):
    assert unavailable_pin.returncode != 0, _shown(unavailable_pin)


def test_unavailable_pin_message_names_package_pin_and_offer(unavailable_pin):
    offered = r"[^()]*\d[^()]*"
    assert re.fullmatch(
        rf"{re.escape(PINNED_IN)}: bash pinned to {re.escape(FAKE_VERSION)} is not on the mirror "
        rf"\(it offers {offered}\); "
        rf"{NO_SUCH_PACKAGE} pinned to 1\.0 is not on the mirror \(it offers nothing\)",
        _failure(unavailable_pin),
    ), _shown(unavailable_pin)


def test_unavailable_pin_message_is_one_line(unavailable_pin):
    assert "\n" not in _failure(unavailable_pin)


def test_unavailable_pin_fails_before_any_install(unavailable_pin):
    ran = _ran(unavailable_pin)
    assert ran[-1].startswith("Ensure every pinned version is on the mirror"), ran
    assert re.search(r"changed=0 .*failed=1", unavailable_pin.stdout), _shown(unavailable_pin)


def test_installed_pin_passes_unchanged(installed_pin):
    assert installed_pin.returncode == 0, _shown(installed_pin)
    assert re.search(r"changed=0 .*failed=0", installed_pin.stdout), _shown(installed_pin)


# A node with every pin installed (a node made from the baked image) needs nothing from
# the mirror: these are what made a forced converge slow, once per role that pins packages.
MIRROR_TASKS = (
    "Ensure the package index is fresh.",
    "Read the versions the package index offers for the pinned packages.",
    "Ensure the packages are installed at their pinned versions.",
)


@pytest.mark.parametrize("task", MIRROR_TASKS)
def test_installed_pin_asks_nothing_of_the_mirror(installed_pin, task):
    assert task in _skipped(installed_pin), _shown(installed_pin)


BASH_HELD = re.compile(r"^changed: \[localhost\] => \(item=bash\)", re.M)


def test_installed_but_unheld_pin_is_held(unheld_pin):
    assert BASH_HELD.search(unheld_pin.stdout), _shown(unheld_pin)


def test_package_without_pin_fails_naming_it(unpinned_package):
    assert unpinned_package.returncode != 0
    assert _failure(unpinned_package) == f"{PINNED_IN}: no pinned version for bash"


# --- the base image's record ----------------------------------------------------------------

STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u6

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b7

"""


def test_base_image_records_its_packages(tmp_path):
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(STATUS)
    path = record_packages(tmp_path)
    assert path == tmp_path / BASE_PACKAGES_FILE
    assert path.read_text() == "base-files\t12.4+deb12u6\nbash\t5.2.15-2+b7\n"
