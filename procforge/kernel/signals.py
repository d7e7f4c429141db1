"""Signals the model needs: SIGSTOP and the SIGCHLD disposition (`kernel/signal.c`).

Facts this relies on (semantics §4, §5):
- SIGSTOP is never ignored and stops the whole group (SIGNAL_STOP_STOPPED); it is sent by the
  restorer from outside the namespace, so a namespace init stops too; a zombie cannot be stopped;
- a SIGCHLD disposition of SIG_IGN makes `do_notify_parent` release a child at its death (or when a
  zombie is reparented to it); setting it does not reap zombies that already exist; fork copies it.
"""

from __future__ import annotations

from procforge.kernel.state import STOPPED, ZOMBIE, KernelRefusal, Process, set_state


def do_stop(proc: Process) -> None:
    if proc.state == ZOMBIE:
        raise KernelRefusal(None, f"{proc.top} is a zombie and cannot be stopped")
    set_state(proc, STOPPED)


def do_sigchld(proc: Process, ignore: bool) -> None:
    proc.sigchld_ign = ignore
