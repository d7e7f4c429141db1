"""Signals the model needs: SIGSTOP and the SIGCHLD disposition (`kernel/signal.c`).

Facts this relies on (semantics §4, §5):
- SIGSTOP is never ignored and stops the whole group (SIGNAL_STOP_STOPPED); it is sent by the
  restorer from outside the namespace, so a namespace init stops too; a zombie cannot be stopped;
- a SIGCHLD disposition of SIG_IGN makes `do_notify_parent` release a child at its death (or when a
  zombie is reparented to it); setting it does not reap zombies that already exist; fork copies it.
"""

from __future__ import annotations

from procforge.kernel.state import SIGKILL, STOPPED, ZOMBIE, KernelRefusal, Process, set_state

NO_KILL = frozenset({17, 18, 19, 20, 21, 22, 23, 28})  # ignore or stop by default
CORE = frozenset({3, 4, 5, 6, 7, 8, 11, 24, 25, 31})  # SIG_KERNEL_COREDUMP_MASK


def death_status(proc: Process, status: int) -> int:
    """The wait status a death by `status` really leaves, or a refusal when no such death can
    happen (`get_signal`'s default actions, `sig_task_ignored` for a namespace init)."""
    sig = status & 0x7F
    if not sig:
        return status
    if sig in NO_KILL:
        raise KernelRefusal(None, f"signal {sig} does not kill: its default action is to ignore "
                                  "or to stop")
    if proc.unkillable and sig != SIGKILL:
        raise KernelRefusal(None, f"{proc.top} is a namespace init: it ignores signal {sig} "
                                  "(only SIGKILL from outside kills it)")
    return status if sig in CORE else sig


def do_stop(proc: Process) -> None:
    if proc.state == ZOMBIE:
        raise KernelRefusal(None, f"{proc.top} is a zombie and cannot be stopped")
    set_state(proc, STOPPED)


def do_sigchld(proc: Process, ignore: bool) -> None:
    proc.sigchld_ign = ignore
