"""Tiny ELF shared objects written byte by byte, for tests of what a wheel links against.

``make_elf(needed=[...], runpath=..., rpath=..., soname=..., machine=..., elf_class=...)`` is a
file the dynamic loader would read the dynamic section of (it has no code): an ELF header, a
PT_LOAD covering the whole file, a PT_DYNAMIC, a string table, and the dynamic entries
(DT_NEEDED for each name, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_STRTAB, DT_STRSZ, DT_NULL). Little
endian; 64-bit unless ``elf_class=32``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29


def make_elf(
    needed: Sequence[str] = (),
    *,
    runpath: str | None = None,
    rpath: str | None = None,
    soname: str | None = None,
    machine: int = EM_X86_64,
    elf_class: int = 64,
) -> bytes:
    wide = elf_class == 64
    ehsize, phentsize = (64, 56) if wide else (52, 32)
    strings = b"\0"
    offsets: dict[str, int] = {}
    for text in [*needed, *(t for t in (runpath, rpath, soname) if t is not None)]:
        if text not in offsets:
            offsets[text] = len(strings)
            strings += text.encode() + b"\0"
    strtab = ehsize + 2 * phentsize
    dynamic = (strtab + len(strings) + 7) & ~7
    entries = [(DT_NEEDED, offsets[n]) for n in needed]
    for tag, text in ((DT_SONAME, soname), (DT_RPATH, rpath), (DT_RUNPATH, runpath)):
        if text is not None:
            entries.append((tag, offsets[text]))
    entries += [(DT_STRTAB, strtab), (DT_STRSZ, len(strings)), (DT_NULL, 0)]
    entry = struct.Struct("<qQ" if wide else "<iI")
    dyn = b"".join(entry.pack(tag, value) for tag, value in entries)
    total = dynamic + len(dyn)
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1, 1, 0]) + bytes(8)
    if wide:
        header = ident + struct.pack(
            "<HHIQQQIHHHHHH", 3, machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, 2, 64, 0, 0
        )
        load = struct.pack("<IIQQQQQQ", 1, 4, 0, 0, 0, total, total, 0x1000)
        dyn_ph = struct.pack("<IIQQQQQQ", 2, 6, dynamic, dynamic, dynamic, len(dyn), len(dyn), 8)
    else:
        header = ident + struct.pack(
            "<HHIIIIIHHHHHH", 3, machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, 2, 40, 0, 0
        )
        load = struct.pack("<IIIIIIII", 1, 0, 0, 0, total, total, 4, 0x1000)
        dyn_ph = struct.pack("<IIIIIIII", 2, dynamic, dynamic, dynamic, len(dyn), len(dyn), 6, 4)
    body = header + load + dyn_ph + strings
    return body + bytes(dynamic - len(body)) + dyn
