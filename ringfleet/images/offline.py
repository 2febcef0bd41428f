"""What an air-gapped site converges its hosts from: a node image's Python wheels and its
Debian packages, written as directories on the controller (`ringfleet images export
PROFILE --wheels` / `--apt`) that the spec names as `software.wheelhouse` and
`software.apt_repo` (roles/site_sources copies them to every host).

Both are fetched by a throwaway container of the image itself, so they are exactly what
its bake installed, for its platform: pip downloads every hashed pin of the image's lock
(`--require-hashes`, binary only), apt every package dpkg lists as installed, at its
installed version. The package index (`Packages`) is written here from the packages'
own control files, and every directory gets a SHA256SUMS naming each file in it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.files import write_atomic

SUMS_FILE = "SHA256SUMS"
PACKAGES_FILE = "Packages"
# Where the container leaves what it fetched (copied out, never bind-mounted).
FETCH_DIR = "/tmp/ringfleet-fetch"
# A fetch moves hundreds of megabytes from PyPI or the mirror.
FETCH_TIMEOUT_SECONDS = 1800
NODE_PIP = "/opt/ringfleet/venv/bin/pip"

# Every hashed pin of the image's lock: exactly the files its bake installed.
WHEELS_SCRIPT = f"""set -eu
mkdir -p {FETCH_DIR}
{NODE_PIP} download --quiet --no-cache-dir --disable-pip-version-check --require-hashes \\
    --no-deps --only-binary :all: --requirement "$1" --dest {FETCH_DIR}
"""
# Every installed package at its installed version: the closure of what the roles
# installed, whatever a host already has. Installed is the status letter (the second):
# apt_pins holds its pins ("hi"), the rest are "ii". The image's index may be older than
# the mirror, so it is refreshed first.
APT_SCRIPT = f"""set -eu
mkdir -p {FETCH_DIR} && cd {FETCH_DIR}
apt-get update -qq
dpkg-query --show --showformat='${{db:Status-Abbrev}} ${{Package}}=${{Version}}\\n' \\
    | awk 'substr($1, 2, 1) == "i" {{ print $2 }}' > /tmp/ringfleet-installed
apt-get download -qq $(cat /tmp/ringfleet-installed) 2>&1 | grep -v 'unsandboxed' >&2 || true
for p in $(cat /tmp/ringfleet-installed); do
    name=${{p%%=*}}; version=${{p#*=}}
    ls "${{name}}_$(echo "$version" | sed 's/:/%3a/')_"*.deb >/dev/null 2>&1 \\
        || {{ echo "not on the mirror: $p" >&2; exit 3; }}
done
"""


@dataclass(frozen=True)
class Fetched:
    directory: Path
    files: int
    size_bytes: int
    seconds: float


class _Chunks(io.RawIOBase):
    """A file over Docker's archive stream, so tarfile reads it without holding it all."""

    def __init__(self, chunks) -> None:
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def fetch_in_image(client, tag: str, script: str, args: list[str], out: Path, what: str) -> int:
    """Run `script` in a throwaway container of `tag`; copy the regular files it left in
    FETCH_DIR into `out` (flat). Returns how many. A failure names the image and the step."""
    container = client.containers.create(
        tag, entrypoint=["/bin/sh", "-c", script, "fetch", *args], network_mode="bridge"
    )
    try:
        container.start()
        result = container.wait(timeout=FETCH_TIMEOUT_SECONDS)
        if result.get("StatusCode") != 0:
            log = container.logs(stdout=True, stderr=True).decode(errors="replace").strip()
            raise RuntimeFailure(f"image {tag}", f"fetching {what} failed", log[-400:])
        stream, _ = container.get_archive(FETCH_DIR)
        count = 0
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BufferedReader(_Chunks(stream)), mode="r|") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                # Flat and regular only: nothing in the stream can write outside `out`.
                if member.isfile() and name not in ("", ".", ".."):
                    write_atomic(out / name, tar.extractfile(member).read(), 0o644)
                    count += 1
        return count
    finally:
        container.remove(force=True)


def write_sums(directory: Path) -> Path:
    """SHA256SUMS over every file under `directory` (relative paths, sorted), written last."""
    lines = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != SUMS_FILE:
            lines.append(f"{_sha256(path)}  {rel}\n")
    return write_atomic(directory / SUMS_FILE, "".join(lines), 0o644)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheels(client, tag: str, lock_in_image: str, out: Path) -> int:
    """Every wheel of the image's hashed lock, into `out`."""
    return fetch_in_image(client, tag, WHEELS_SCRIPT, [lock_in_image], out, "the lock's wheels")


def export_apt(client, tag: str, out: Path) -> Fetched:
    """Image `tag`'s installed Debian packages as a flat repository in `out`: the .debs,
    their `Packages` index and SHA256SUMS (`deb [trusted=yes] file:<copy> ./`)."""
    started = time.monotonic()
    fetch_in_image(client, tag, APT_SCRIPT, [], out, "the installed Debian packages")
    write_atomic(out / PACKAGES_FILE, packages_index(out), 0o644)
    write_sums(out)
    debs = list(out.glob("*.deb"))
    size = sum(p.stat().st_size for p in debs)
    return Fetched(out, len(debs), size, time.monotonic() - started)


def packages_index(directory: Path) -> str:
    """The `Packages` index of the .deb files in `directory`, as dpkg-scanpackages writes
    it: each package's control stanza plus Filename, Size, MD5sum and SHA256."""
    stanzas = []
    for deb in sorted(directory.glob("*.deb")):
        data = deb.read_bytes()
        control = deb_control(data, deb.name).rstrip("\n")
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\n"  # noqa: S324 - apt's index field
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    return "\n".join(stanzas)


def deb_control(data: bytes, name: str) -> str:
    """The `control` file of a .deb: an ar archive whose control.tar.{xz,gz,} holds it."""
    if not data.startswith(b"!<arch>\n"):
        raise RingfleetError(name, "not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[offset + 60 : offset + 60 + size]
        if member.startswith("control.tar"):
            return _control_from_tar(_decompress(member, body, name), name)
        offset += 60 + size + (size % 2)  # members are 2-byte aligned
    raise RingfleetError(name, "not a Debian package (no control.tar member)")


def _decompress(member: str, body: bytes, name: str) -> bytes:
    if member.endswith(".xz"):
        return lzma.decompress(body)
    if member.endswith(".gz"):
        return gzip.decompress(body)
    if member == "control.tar":
        return body
    raise RingfleetError(name, f"unsupported compression of {member}")


def _control_from_tar(blob: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if PurePosixPath(member.name).as_posix().lstrip("./") == "control":
                return tar.extractfile(member).read().decode()
    raise RingfleetError(name, "its control archive has no control file")
