"""Read a process's child-subreaper flag, which /proc does not show, by making it ask the kernel.

Kernel facts this relies on (semantics §6; ptrace(2); arch/x86 entry and signal code):
- PR_GET_CHILD_SUBREAPER (37) stores signal->is_child_subreaper as an int at a user address of the
  *calling* process; only the process itself can run it. CRIU does it from its parasite; we do the
  same with one injected system call, on x86_64 only.
- PTRACE_SEIZE attaches without stopping or signalling; PTRACE_INTERRUPT then traps the thread in
  get_signal() (a PTRACE_EVENT_STOP). A group-stopped task re-traps the same way, and goes back to
  its group stop at detach while SIGNAL_STOP_STOPPED holds.
- A thread that was in a system call stops with rip just past its `syscall` instruction (0f 05),
  rax = -ERESTART* and orig_rax = the call; we run our call on that instruction (else on one in the
  vDSO), with orig_rax = -1 so no restart logic touches it, by two PTRACE_SYSCALL steps (entry,
  exit). Registers are never put back at a syscall-entry stop: the kernel would run orig_rax.
- Interrupted calls are restarted by arch_do_signal_or_restart() when get_signal() returns with no
  handler to run. To keep that path exactly, we put the saved registers back, trap the thread once
  more in get_signal() (PTRACE_INTERRUPT + PTRACE_CONT), and detach from there: the kernel restarts
  the call as if we had never been there.
- Signals that arrive meanwhile: blockable ones are blocked for the injection (PTRACE_SETSIGMASK)
  and stay pending; an unblockable stop seen in a signal-delivery-stop is handed back at detach.
- The scratch int lives 512 bytes below the thread's rsp (past the 128-byte red zone); the 8 bytes
  there are saved and written back. Memory is read and written through /proc/TID/mem.
- If this process dies while tracing, the kernel detaches every tracee (exit_ptrace).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import struct
from dataclasses import replace

from procforge.errors import EnvironmentProblem
from procforge.tree import ZOMBIE, Tree

PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_DETACH, PTRACE_SYSCALL = 7, 12, 13, 17, 24
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
PTRACE_GETSIGMASK, PTRACE_SETSIGMASK = 0x420A, 0x420B
PTRACE_O_TRACESYSGOOD = 1
PTRACE_EVENT_STOP = 128
WALL = 0x40000000
SYS_PRCTL, PR_GET_CHILD_SUBREAPER = 157, 37
SYSCALL_INSN = b"\x0f\x05"
SCRATCH_BELOW_SP = 512

_REGS = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
         "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
         "es", "fs", "gs"]


class UserRegs(ctypes.Structure):
    """struct user_regs_struct, x86_64."""

    _fields_ = [(n, ctypes.c_ulonglong) for n in _REGS]


class ProbeFailed(Exception):
    """This task cannot be probed (gone, a zombie, traced by someone else); its flag is unknown."""


_libc: ctypes.CDLL | None = None


def _ptrace(req: int, tid: int, addr: int = 0, data: int | ctypes.c_void_p = 0) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ptrace.restype = ctypes.c_long
        _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    r = _libc.ptrace(req, tid, ctypes.c_void_p(addr), data if isinstance(data, ctypes.c_void_p)
                     else ctypes.c_void_p(data))
    if r == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")
    return r


def _wait(tid: int) -> int:
    """Wait for the next event of a tracee; raise ProbeFailed if it died."""
    _, status = os.waitpid(tid, WALL)
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        raise ProbeFailed(f"thread {tid} died")
    return status


def _event(status: int) -> int:
    return status >> 16


class _Tracee:
    """One seized thread: the state to put back, and the steps of the injection."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.regs: UserRegs | None = None
        self.mask: ctypes.c_ulonglong | None = None
        self.scratch: tuple[int, bytes] | None = None
        self.regs_dirty = False
        self.at_entry = False  # stopped at our call's syscall-entry stop
        self.pending_signal = 0
        self.mem = -1

    def stop(self) -> None:
        """Bring the thread to an interrupt stop in get_signal(), passing on any signal met."""
        _ptrace(PTRACE_INTERRUPT, self.tid)
        while True:
            status = _wait(self.tid)
            if _event(status) == PTRACE_EVENT_STOP:
                return
            sig = os.WSTOPSIG(status)
            if sig != (signal.SIGTRAP | 0x80):  # a signal-delivery-stop: let the signal through
                _ptrace(PTRACE_CONT, self.tid, 0, sig)
            else:
                _ptrace(PTRACE_CONT, self.tid, 0, 0)

    def step_syscall(self) -> None:
        """Resume to the next syscall stop, holding back (for detach) an unblockable signal."""
        _ptrace(PTRACE_SYSCALL, self.tid, 0, 0)
        while True:
            status = _wait(self.tid)
            sig = os.WSTOPSIG(status)
            if _event(status) == 0 and sig == (signal.SIGTRAP | 0x80):
                return
            if _event(status) == 0 and sig not in (signal.SIGTRAP,):
                self.pending_signal = self.pending_signal or sig
            _ptrace(PTRACE_SYSCALL, self.tid, 0, 0)

    def getregs(self) -> UserRegs:
        r = UserRegs()
        _ptrace(PTRACE_GETREGS, self.tid, 0, ctypes.c_void_p(ctypes.addressof(r)))
        return r

    def setregs(self, r: UserRegs) -> None:
        _ptrace(PTRACE_SETREGS, self.tid, 0, ctypes.c_void_p(ctypes.addressof(r)))

    def read(self, addr: int, n: int) -> bytes:
        return os.pread(self.mem, n, addr)

    def write(self, addr: int, data: bytes) -> None:
        if os.pwrite(self.mem, data, addr) != len(data):
            raise ProbeFailed(f"thread {self.tid}: short write at {addr:#x}")

    def syscall_insn(self, rip: int) -> int:
        """Address of a `syscall` instruction already in the task's memory."""
        try:
            if self.read(rip - 2, 2) == SYSCALL_INSN:
                return rip - 2
        except OSError:
            pass
        with open(f"/proc/{self.tid}/maps") as f:
            for line in f:
                if line.rstrip().endswith("[vdso]"):
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    i = self.read(lo, hi - lo).find(SYSCALL_INSN)
                    if i >= 0:
                        return lo + i
        raise ProbeFailed(f"thread {self.tid}: no syscall instruction found")

    def inject_prctl(self) -> int:
        assert self.regs is not None
        sp = self.regs.rsp
        addr = (sp - SCRATCH_BELOW_SP) & ~7
        self.scratch = (addr, self.read(addr, 8))
        r = UserRegs.from_buffer_copy(self.regs)
        r.rip = self.syscall_insn(self.regs.rip)
        r.rax, r.orig_rax = SYS_PRCTL, 2**64 - 1
        r.rdi, r.rsi, r.rdx, r.r10, r.r8 = PR_GET_CHILD_SUBREAPER, addr, 0, 0, 0
        self.regs_dirty = True
        self.setregs(r)
        self.step_syscall()  # entry
        self.at_entry = True
        self.step_syscall()  # exit
        self.at_entry = False
        result = ctypes.c_longlong(self.getregs().rax).value
        if result != 0:
            raise ProbeFailed(f"thread {self.tid}: prctl returned {result}")
        return struct.unpack("<i", self.read(addr, 4))[0]

    def restore(self) -> None:
        """Put memory and registers back and leave the thread in get_signal() for detach."""
        if self.at_entry:  # finish our call first: registers set here would choose the call
            self.step_syscall()
            self.at_entry = False
        if self.scratch is not None:
            self.write(*self.scratch)
            self.scratch = None
        if self.regs_dirty and self.regs is not None:
            self.setregs(self.regs)
            self.stop_after_restore()
            self.regs_dirty = False
        if self.mask is not None:
            _ptrace(PTRACE_SETSIGMASK, self.tid, 8, ctypes.c_void_p(ctypes.addressof(self.mask)))

    def stop_after_restore(self) -> None:
        _ptrace(PTRACE_INTERRUPT, self.tid)
        _ptrace(PTRACE_CONT, self.tid, 0, 0)
        while True:
            status = _wait(self.tid)
            if _event(status) == PTRACE_EVENT_STOP:
                return
            sig = os.WSTOPSIG(status)
            if _event(status) == 0 and sig != (signal.SIGTRAP | 0x80):
                self.pending_signal = self.pending_signal or sig
            _ptrace(PTRACE_CONT, self.tid, 0, 0)


def probe_thread(tid: int) -> bool:
    """The child-subreaper flag of the process of thread `tid` (a pid of our own namespace)."""
    if platform.machine() != "x86_64":
        raise EnvironmentProblem("the subreaper probe supports x86_64 only; use --no-probe")
    try:
        _ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD)
    except OSError as e:
        raise ProbeFailed(f"thread {tid}: cannot attach: {e.strerror}") from None
    t = _Tracee(tid)
    try:
        t.mem = os.open(f"/proc/{tid}/mem", os.O_RDWR)
        t.stop()
        t.regs = t.getregs()
        mask = ctypes.c_ulonglong(0)
        _ptrace(PTRACE_GETSIGMASK, tid, 8, ctypes.c_void_p(ctypes.addressof(mask)))
        t.mask = mask
        block_all = ctypes.c_ulonglong(2**64 - 1)
        _ptrace(PTRACE_SETSIGMASK, tid, 8, ctypes.c_void_p(ctypes.addressof(block_all)))
        value = t.inject_prctl()
        t.restore()
        return bool(value)
    except OSError as e:
        raise ProbeFailed(f"thread {tid}: {e}") from None
    finally:
        _release(t)


def _release(t: _Tracee) -> None:
    """Whatever happened, leave the thread as it was and untraced."""
    try:
        t.getregs()  # fails with ESRCH unless the thread sits in a ptrace-stop
    except OSError:
        with contextlib.suppress(OSError, ProbeFailed):  # gone: nothing to put back
            t.stop()
    with contextlib.suppress(OSError, ProbeFailed):
        t.restore()
    with contextlib.suppress(OSError):  # gone
        _ptrace(PTRACE_DETACH, t.tid, 0, t.pending_signal)
    if t.mem >= 0:
        os.close(t.mem)


def _own_flag() -> bool:
    """Our own flag needs no ptrace (and cannot have it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    v = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(v), 0, 0, 0)
    return bool(v.value)


def _live_thread(proc: str, pid: int) -> int | None:
    """A thread of `pid` that can run our call: the leader, or any live thread if it has exited."""
    try:
        tids = sorted(int(x) for x in os.listdir(f"{proc}/{pid}/task"))
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"{proc}/{pid}/task/{tid}/stat", "rb") as f:
                b = f.read()
        except OSError:
            continue
        if b[b.rfind(b")") + 2] not in b"ZX":
            return tid
    return None


def probe_tree(tree: Tree, mount_pid: dict[int, int], proc: str) -> Tree:
    """`tree` with each live process's flag read by injection; zombies and tasks that cannot be
    probed (gone, traced by someone else) keep null (unknown). `mount_pid` maps tree ids to pids
    of the /proc mount, which must be this process's own namespace's."""
    try:
        ours = os.readlink(f"{proc}/self") == str(os.getpid())
    except OSError:
        ours = False
    if not ours:
        raise EnvironmentProblem(f"{proc} is not the /proc of this process's pid namespace: the "
                                 "subreaper probe needs pids it can trace; use /proc or --no-probe")
    me = os.getpid()
    out = []
    for t in tree:
        flag: bool | None = None
        p = mount_pid[t.id]
        if t.state != ZOMBIE:
            if p == me:
                flag = _own_flag()
            else:
                tid = p if not t.leader_exited else _live_thread(proc, p)
                if tid is not None:
                    try:
                        flag = probe_thread(tid)
                    except ProbeFailed:
                        flag = None
        out.append(replace(t, child_subreaper=flag))
    return tree.replace_tasks(out)
