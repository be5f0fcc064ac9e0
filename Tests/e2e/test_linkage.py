"""The devbox binary under test stays off FoundationNetworking and libcurl.

URLSession (FoundationNetworking) drags libcurl and its TLS, Kerberos, LDAP, SSH… libraries
into the process: about 8.6 MiB of resident memory for an idle `devbox serve`. HTTP clients
use async-http-client instead. These tests read the binary's own DT_NEEDED entries and the
libraries a running serve has actually mapped, so the dependency cannot come back silently.
"""
from __future__ import annotations

import mmap
import struct

from devbox_harness import BIN

FORBIDDEN = ("libFoundationNetworking", "libcurl")

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5


def needed_libraries(path: str) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF file (x86_64, aarch64)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[:4] == b"\x7fELF", f"{path} is not an ELF file"
        assert m[4] == 2 and m[5] == 1, f"{path} is not a 64-bit little-endian ELF file"
        phoff, = struct.unpack_from("<Q", m, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", m, 0x36)
        loads, dynamic = [], None
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", m, phoff + i * phentsize)
            if p_type == PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        assert dynamic is not None, f"{path} has no dynamic section (statically linked?)"

        entries = []
        off, size = dynamic
        for pos in range(off, off + size, 16):
            tag, val = struct.unpack_from("<qQ", m, pos)
            if tag == DT_NULL:
                break
            entries.append((tag, val))
        strtab_vaddr = next(val for tag, val in entries if tag == DT_STRTAB)
        strtab = next(off + strtab_vaddr - vaddr for vaddr, off, size in loads if vaddr <= strtab_vaddr < vaddr + size)

        def string(at: int) -> str:
            end = m.find(b"\0", strtab + at)
            return m[strtab + at:end].decode()

        return [string(val) for tag, val in entries if tag == DT_NEEDED]


def test_the_binary_does_not_link_foundation_networking_or_libcurl():
    libs = needed_libraries(BIN)
    # The parser read the real list: the Swift runtime and Foundation are in it.
    assert "libswiftCore.so" in libs and "libFoundation.so" in libs, libs
    linked = [lib for lib in libs if lib.startswith(FORBIDDEN)]
    assert linked == [], f"{BIN} links {linked}: URLSession is back (use async-http-client)"


def mapped_libraries(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1].rsplit("/", 1)[-1] for line in f if ".so" in line.split()[-1]}


def test_a_running_serve_maps_neither(server):
    # What the dynamic loader actually brought in, directly or through other libraries.
    libs = mapped_libraries(server.proc.pid)
    assert "libswiftCore.so" in libs, sorted(libs)
    loaded = sorted(lib for lib in libs if lib.startswith(FORBIDDEN))
    assert loaded == [], f"devbox serve has {loaded} mapped"
