"""Strip symbol tables and debug info from the ELF shared libraries of a venv.

Usage: strip_symbols.py VENV [--list]

Run by the tensorflow role with the venv's python when it bakes a node image
(tensorflow_strip_symbols). The wheels of the lock ship ~0.3 GB of .symtab,
.strtab and .debug_* sections (TensorFlow's libtensorflow_cc alone 152 MB) that
no rank reads: the loader resolves through .dynsym, which `strip --strip-unneeded`
keeps. Prints one JSON object: with --list the files that still carry such
sections, otherwise what was stripped.

Left alone:
- libraries in an auditwheel `<dist>.libs` directory: patchelf rewrote their
  headers and strip breaks that layout (scipy's OpenBLAS then fails to load with
  "ELF load command address/offset not page-aligned"; NixOS/patchelf#10);
- any file whose stripped copy would not be loadable (checked below before the
  copy replaces it): it is reported under "refused" and keeps its symbols.
"""

import json
import os
import shutil
import struct
import subprocess
import sys

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ET_DYN = 3
PT_LOAD = 1
# Sections strip --strip-unneeded removes from a shared library: none is mapped at run time.
UNNEEDED_PREFIXES = (".symtab", ".strtab", ".debug_")
STRIP_ARGV = ["strip", "--strip-unneeded"]
AUDITWHEEL_SUFFIX = ".libs"
TMP_SUFFIX = ".ringfleet-strip"


def _header(data: bytes):
    """Header fields of a 64-bit little-endian ELF shared object, or None."""
    if len(data) < 64 or data[:4] != ELF_MAGIC or data[4] != ELFCLASS64 or data[5] != 1:
        return None
    if struct.unpack_from("<H", data, 0x10)[0] != ET_DYN:
        return None
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    return shoff, shentsize, shnum, shstrndx, phoff, phentsize, phnum


def unneeded_bytes(path: str) -> int:
    """Bytes of the sections strip would remove from `path` (0 when it is no shared library)."""
    with open(path, "rb") as f:
        head = _header(f.read(64))
        if head is None:
            return 0
        shoff, shentsize, shnum, shstrndx, *_ = head
        if shnum == 0 or shstrndx >= shnum:
            return 0
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        f.seek(sections[shstrndx][4])
        names = f.read(sections[shstrndx][5])
    total = 0
    for name_at, _kind, _flags, _addr, _offset, size in sections:
        name = names[name_at : names.find(b"\0", name_at)].decode(errors="replace")
        if name.startswith(UNNEEDED_PREFIXES):
            total += size
    return total


def loadable(path: str) -> bool:
    """True when each PT_LOAD of `path` lies in the file, its offset congruent to its address."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = _header(f.read(64))
        if head is None:
            return False
        *_, phoff, phentsize, phnum = head
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        kind, _flags, offset, vaddr, _paddr, filesz, _memsz, align = struct.unpack_from(
            "<IIQQQQQQ", table, i * phentsize
        )
        if kind != PT_LOAD:
            continue
        if align > 1 and offset % align != vaddr % align:
            return False
        if offset + filesz > size:
            return False
    return True


def candidates(venv: str) -> list[tuple[str, int]]:
    """Shared libraries under VENV/lib that carry unneeded sections, with those sections' size."""
    found = []
    for top, dirs, files in os.walk(os.path.join(venv, "lib")):
        dirs[:] = sorted(d for d in dirs if not d.endswith(AUDITWHEEL_SUFFIX))
        for name in sorted(files):
            path = os.path.join(top, name)
            if ".so" not in name or name.endswith(TMP_SUFFIX) or os.path.islink(path):
                continue
            extra = unneeded_bytes(path)
            if extra:
                found.append((path, extra))
    return found


def strip(path: str) -> bool:
    """Strip `path` through a checked copy; False, `path` untouched, if the copy would not load."""
    tmp = path + TMP_SUFFIX
    run = subprocess.run([*STRIP_ARGV, "-o", tmp, path], capture_output=True, text=True)
    if run.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise SystemExit(f"strip {path}: {run.stderr.strip() or 'exit ' + str(run.returncode)}")
    if not loadable(tmp):
        os.unlink(tmp)
        return False
    shutil.copymode(path, tmp)
    os.replace(tmp, path)
    return True


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] != "--list"):
        print("usage: strip_symbols.py VENV [--list]", file=sys.stderr)
        return 2
    found = candidates(argv[0])
    if len(argv) == 2:
        print(json.dumps({"files": [p for p, _ in found], "bytes": sum(n for _, n in found)}))
        return 0
    before = sum(os.path.getsize(p) for p, _ in found)
    stripped, refused = [], []
    for path, _ in found:
        (stripped if strip(path) else refused).append(path)
    after = sum(os.path.getsize(p) for p, _ in found)
    print(
        json.dumps({"stripped": len(stripped), "saved_bytes": before - after, "refused": refused})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
