"""ringfleet.fileio: atomic writes that survive concurrent writers and never leak to others."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from ringfleet.files import write_atomic

WRITERS = 8
WRITES_EACH = 40


def _hammer(path: Path, payloads: list[str], errors: list[BaseException]) -> None:
    def writer(text: str) -> None:
        try:
            for _ in range(WRITES_EACH):
                write_atomic(path, text)
        except BaseException as exc:  # noqa: BLE001 - collected, asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_writers_never_fail(tmp_path):
    path = tmp_path / "outputs.json"
    errors: list[BaseException] = []
    _hammer(path, [f"{i}" * 10000 for i in range(WRITERS)], errors)
    assert errors == []


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    path = tmp_path / "outputs.json"
    payloads = [f"{i}" * 10000 for i in range(WRITERS)]
    _hammer(path, payloads, [])
    assert path.read_text(encoding="utf-8") in payloads


def test_concurrent_writers_leave_no_temporary_files(tmp_path):
    path = tmp_path / "outputs.json"
    _hammer(path, [f"{i}" * 100 for i in range(WRITERS)], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.json"]


def test_written_file_is_owner_only(tmp_path):
    path = write_atomic(tmp_path / "state.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rewrite_keeps_owner_only_mode_of_a_file_left_open_to_others(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o644)
    write_atomic(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
