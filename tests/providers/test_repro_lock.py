"""How the reproducible-build tier reports a cold build that differs from the committed lock."""

from __future__ import annotations

import yaml

from tests.providers.test_reproducible import lock_difference

LOCK = {
    "version": 1,
    "env": "repro",
    "pools": {
        "cpu": {
            "os": "Debian GNU/Linux 12 (bookworm)",
            "kernel": "6.1.0-test",
            "debian": {"packages": {"libc6": "2.36-9+deb12u9"}},
        }
    },
}


def _with(pool_changes: dict) -> str:
    lock = yaml.safe_load(yaml.safe_dump(LOCK))
    lock["pools"]["cpu"].update(pool_changes)
    return yaml.safe_dump(lock)


def test_equal_locks_have_no_difference() -> None:
    assert lock_difference(_with({}), _with({})) == ""


def test_another_host_kernel_is_no_difference() -> None:
    assert lock_difference(_with({}), _with({"kernel": "6.8.0-other"})) == ""


def test_difference_names_the_moved_package() -> None:
    moved = _with({"debian": {"packages": {"libc6": "2.36-9+deb12u10"}}})
    assert "+        libc6: 2.36-9+deb12u10" in lock_difference(_with({}), moved)


def test_difference_says_how_to_regenerate_the_lock() -> None:
    moved = _with({"os": "Debian GNU/Linux 13 (trixie)"})
    assert "`make repro-lock`" in lock_difference(_with({}), moved)
