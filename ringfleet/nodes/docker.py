"""Run commands and place files on cluster nodes.

Local nodes are reached through the Docker API (no SSH from the controller is
needed); the job itself still crosses nodes over the cluster's SSH mesh.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import PurePosixPath

import docker
import docker.errors

from ringfleet.errors import RuntimeFailure


class DockerNode:
    """One local node container."""

    def __init__(self, client: docker.DockerClient, name: str):
        self.client = client
        self.name = name

    def container(self):
        return self.client.containers.get(self.name)

    def state(self) -> str:
        try:
            return self.container().status
        except docker.errors.NotFound:
            return "removed"

    def run(self, argv: list[str], user: str = "root", check: bool = True) -> tuple[int, str]:
        """Run argv to completion; returns (exit code, combined output)."""
        code, output = self.container().exec_run(argv, user=user, demux=False)
        text = (output or b"").decode(errors="replace")
        if check and code != 0:
            raise RuntimeFailure(
                self.name, f"command failed ({code}): {' '.join(argv)[:80]}", text.strip()[-200:]
            )
        return code, text

    def output(self, argv: list[str], user: str = "root") -> str:
        """stdout of argv, which must succeed; stderr only names what went wrong."""
        code, (out, err) = self.container().exec_run(argv, user=user, demux=True)
        if code != 0:
            text = (err or out or b"").decode(errors="replace")
            raise RuntimeFailure(
                self.name, f"command failed ({code}): {' '.join(argv)[:80]}", text.strip()[-200:]
            )
        return (out or b"").decode(errors="replace")

    def put_file(self, path: str, data: bytes, owner: tuple[int, int], mode: int = 0o644) -> None:
        """Write one file (directory must exist) with the given uid/gid."""
        target = PurePosixPath(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(target.name)
            info.size = len(data)
            info.mode = mode
            info.uid, info.gid = owner
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self.container().put_archive(str(target.parent), buf.getvalue()):
            raise RuntimeFailure(self.name, f"could not write {path}")

    def stream(self, argv: list[str], user: str, workdir: str | None = None) -> ExecStream:
        api = self.client.api
        exec_id = api.exec_create(self.name, argv, user=user, workdir=workdir)["Id"]
        return ExecStream(api, exec_id)


class ExecStream:
    """Lines of a running exec, read on a thread so the caller can watch other things."""

    def __init__(self, api, exec_id: str):
        self.api = api
        self.exec_id = exec_id
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.done = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        try:
            for chunk in self.api.exec_start(self.exec_id, stream=True):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                with self._cond:
                    self.lines.extend(c.decode(errors="replace") for c in complete)
                    self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - a dead node ends the stream with any error
            with self._cond:
                self.lines.append(f"[ringfleet] output stream ended: {exc}")
        finally:
            with self._cond:
                if pending:
                    self.lines.append(pending.decode(errors="replace"))
                self.done = True
                self._cond.notify_all()

    def read(self, start: int, wait: float) -> Iterator[str]:
        """Lines from index `start`, waiting up to `wait` seconds for new ones."""
        with self._cond:
            if len(self.lines) <= start and not self.done:
                self._cond.wait(wait)
            return iter(self.lines[start:])

    def exit_code(self) -> int | None:
        info = self.api.exec_inspect(self.exec_id)
        return None if info.get("Running") else info.get("ExitCode")
