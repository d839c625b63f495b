"""A small seccomp filter for build code, handed to bubblewrap (``--seccomp FD``).

Namespaces do not cover everything a process can reach. This filter refuses what a build never
needs and what would let it out or widen the kernel's attack surface:

- the kernel keyrings (``keyctl``, ``add_key``, ``request_key``): bwrap keeps rewheel's session
  keyring, where Kerberos tickets and other tokens live, and a key added there would outlive
  the build;
- ``socket(AF_VSOCK, ...)``: virtual-machine sockets are not part of the network namespace;
- ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_setup``/``_enter``/``_register``:
  kernel interfaces builds do not use, often the way into a kernel bug;
- on x86_64, every x32 system call (numbers with bit 30 set), so the table cannot be dodged.

Refused calls fail with ``ENOSYS`` (``EAFNOSUPPORT`` for the socket family), which programs
treat as "not supported here". The program is classic BPF, assembled here from the kernel's
documented layout of ``struct seccomp_data``; machines whose architecture has no table below get
no filter, and the records say so.
"""

from __future__ import annotations

import errno
import platform
import socket
import struct

# struct sock_filter: u16 code, u8 jt, u8 jf, u32 k.
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16
_X32_BIT = 0x40000000
_AF_VSOCK = getattr(socket, "AF_VSOCK", 40)

# Per machine: the audit architecture and the numbers of the refused calls, and of socket().
_TABLES: dict[str, tuple[int, dict[str, int], int]] = {
    "x86_64": (
        0xC000003E,  # AUDIT_ARCH_X86_64
        {
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "perf_event_open": 298,
            "bpf": 321,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
        },
        41,
    ),
    "aarch64": (
        0xC00000B7,  # AUDIT_ARCH_AARCH64
        {
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "perf_event_open": 241,
            "bpf": 280,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
        },
        198,
    ),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def refused_calls(machine: str | None = None) -> list[str]:
    """The names of the calls the filter refuses on ``machine`` (none without a table)."""
    table = _TABLES.get(machine or platform.machine())
    return [*sorted(table[1]), "socket(AF_VSOCK)"] if table else []


def build_filter(machine: str | None = None) -> bytes | None:
    """The filter program for ``machine`` (default: this one), or None if it has no table."""
    table = _TABLES.get(machine or platform.machine())
    if table is None:
        return None
    arch, calls, socket_nr = table
    denied = sorted(calls.values())
    enosys = _RET_ERRNO | errno.ENOSYS
    # Layout: [arch check][nr load][x32 check][one jeq per denied call][socket jeq][allow]
    #         [deny][socket: load arg0, jeq vsock, allow, refuse]
    prog: list[bytes] = []
    n_denied = len(denied)
    # Where the jumps land, counted from the start.
    x86 = arch == _TABLES["x86_64"][0]
    allow_at = 3 + n_denied + 1 + (1 if x86 else 0)
    deny_at = allow_at + 1
    socket_at = deny_at + 1

    def here() -> int:
        return len(prog)

    # Another architecture's calls (i386 on x86_64) are refused, all of them.
    prog.append(_insn(_LD_W_ABS, _OFF_ARCH))
    prog.append(_insn(_JEQ_K, arch, jt=0, jf=_rel(here(), deny_at)))
    prog.append(_insn(_LD_W_ABS, _OFF_NR))
    if x86:
        prog.append(_insn(_JGE_K, _X32_BIT, jt=_rel(here(), deny_at), jf=0))
    for nr in denied:
        prog.append(_insn(_JEQ_K, nr, jt=_rel(here(), deny_at), jf=0))
    prog.append(_insn(_JEQ_K, socket_nr, jt=_rel(here(), socket_at), jf=0))
    assert here() == allow_at
    prog.append(_insn(_RET_K, _RET_ALLOW))
    prog.append(_insn(_RET_K, enosys))
    assert here() == socket_at
    prog.append(_insn(_LD_W_ABS, _OFF_ARG0))
    prog.append(_insn(_JEQ_K, _AF_VSOCK, jt=1, jf=0))
    prog.append(_insn(_RET_K, _RET_ALLOW))
    prog.append(_insn(_RET_K, _RET_ERRNO | errno.EAFNOSUPPORT))
    return b"".join(prog)


def _rel(at: int, target: int) -> int:
    """The jump offset from the instruction at ``at`` to ``target`` (BPF counts from the next)."""
    offset = target - at - 1
    if not 0 <= offset <= 255:
        raise ValueError(f"jump from {at} to {target} does not fit")
    return offset
