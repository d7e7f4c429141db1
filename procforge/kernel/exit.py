"""Exit, reparenting, namespace death, orphaned groups and wait (`kernel/exit.c`, `kernel/signal.c`,
`kernel/pid_namespace.c`).

Facts this relies on (semantics §1 CLONE_NEWPID, §4, §5):
- `exit_notify` first reparents the children (`forget_original_parent`), then checks the exiting
  task's own group (`kill_orphaned_pgrp(tsk, NULL)`), then becomes a zombie and notifies the parent;
  `do_notify_parent` releases it at once when the parent ignores SIGCHLD (auto-reap);
- the new parent is: a live thread of the same group (`find_alive_thread`); else, only if the dying
  process has `has_child_subreaper`, the nearest ancestor at the same namespace level with
  `is_child_subreaper` and a live thread (`find_new_reaper`); else the namespace's child_reaper;
- each child is reparented in list order; a reparented zombie is notified to its new parent and
  released at once if that parent ignores SIGCHLD (`reparent_leader`); then
  `kill_orphaned_pgrp(child, father)` runs on the child's group;
- a group that becomes orphaned (no member has a parent in another group of the same session; the
  global init does not count as such a parent) while it has stopped members is hit
  (`kill_orphaned_pgrp`); measured on 6.18 (tests/test_model_kernel.py, the reference §4 says
  otherwise): only the *stopped* members die of SIGHUP; running members get only SIGCONT and live
  on; a stopped namespace init ignores the SIGHUP and is continued; a group with members outside
  the model (the restorer's own, external ones) is taken as never orphaned: the restorer's parent
  keeps it linked, as a shell keeps its jobs;
- when the last thread of a namespace init exits, the namespace dies: no new pids, every task in it
  (and in the namespaces below) is killed with SIGKILL and reaped, and the init becomes a zombie
  only after that (`zap_pid_ns_processes`); if another thread of the init lives, it becomes the
  reaper; zap waits until the only pid left allocated in the namespace is the init's own, so a pid
  of the namespace still held as a PGID (by a process outside, or by the init itself: it leaves its
  group only when released) makes it wait for ever (measured on 6.18);
- a leader thread that exits while others live stays as a zombie *leader*, which is not a zombie
  process: it cannot be waited for; the group's children stay with the group.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from procforge.kernel.pids import maybe_free
from procforge.kernel.state import (
    ALIVE,
    SIGHUP,
    SIGKILL,
    STOPPED,
    ZOMBIE,
    KernelRefusal,
    Process,
    set_state,
)

if TYPE_CHECKING:
    from procforge.kernel.machine import Kernel


def do_exit(k: Kernel, proc: Process, status: int) -> None:
    """The whole thread group ends with `status`, then any SIGHUP it caused is delivered."""
    if proc.ns.reaper is proc:
        _check_zap_can_finish(proc)
    pending = _Pending()
    _exit_group(k, proc, status, pending)
    while pending.queue:
        victim = pending.queue.popleft()
        if victim.state != ZOMBIE and k.procs.get(victim.top) is victim:
            _exit_group(k, victim, SIGHUP, pending)


class _Pending:
    """Processes a SIGHUP has been sent to, in order, each once."""

    __slots__ = ("queue", "seen")

    def __init__(self) -> None:
        self.queue: deque[Process] = deque()
        self.seen: set[int] = set()

    def add(self, p: Process) -> None:
        if id(p) not in self.seen:
            self.seen.add(id(p))
            self.queue.append(p)


def _exit_group(k: Kernel, proc: Process, status: int, pending: _Pending) -> None:
    for t in proc.threads:
        t.task = None
        maybe_free(t)
    proc.threads = []
    proc.leader_alive = False
    if proc.ns.reaper is proc:
        _zap_namespace(k, proc)
    _forget_original_parent(k, proc, pending)
    _kill_orphaned_pgrp(k, proc, None, pending)
    set_state(proc, ZOMBIE)
    proc.status = status
    parent = proc.parent
    if parent is not None and parent.sigchld_ign:
        release(k, proc)


def _check_zap_can_finish(init: Process) -> None:
    """zap_pid_ns_processes waits until every pid of the namespace is free: a group outside the
    namespace named after a task inside it would keep init waiting for ever. The model refuses
    it."""
    ns = init.ns
    g = init.pgrp
    if g is not init.pid and g.ns.is_within(ns):
        # found by the differential runner (docs/fuzz.md): the init itself holds that pid as its
        # PGID until it is released, so the namespace never empties
        raise KernelRefusal(None, f"init {init.top} would wait for ever: it is in group {g.top}, "
                                  "a pid of its own namespace that it holds itself")
    for pid in ns.pids.values():
        if pid is init.pid or not pid.pgrp:
            continue
        if any(not m.ns.is_within(ns) for m in pid.pgrp.values()):
            raise KernelRefusal(None, f"init {init.top} would wait for ever: group {pid.top} of "
                                      "its namespace has members outside it")


def _zap_namespace(k: Kernel, init: Process) -> None:
    """zap_pid_ns_processes: kill and reap everything in init's namespace and below."""
    ns = init.ns
    ns.adding = False
    # every task of the namespace descends from its init: orphans stay inside (the subreaper walk
    # stops at the level boundary), so a walk of init's subtree finds them all, nested ones too
    victims: list[Process] = []
    stack = list(init.children.values())
    while stack:
        v = stack.pop()
        victims.append(v)
        stack.extend(v.children.values())
    for v in victims:
        for t in v.threads:
            t.task = None
            maybe_free(t)
        v.threads = []
        set_state(v, ZOMBIE)
        v.status = SIGKILL
    for v in victims:
        release(k, v)
        v.children = {}


def _forget_original_parent(k: Kernel, father: Process, pending: _Pending) -> None:
    if not father.children:
        return
    reaper = _find_new_reaper(father)
    dead: list[Process] = []
    for child in list(father.children.values()):
        del father.children[child.top]
        child.parent = reaper
        if reaper is not None:
            reaper.children[child.top] = child
        if child.state == ZOMBIE and reaper is not None and reaper.sigchld_ign:
            dead.append(child)  # reparent_leader: do_notify_parent auto-reaps it
        _kill_orphaned_pgrp(k, child, father, pending)
    for z in dead:
        release(k, z)


def _find_new_reaper(father: Process) -> Process | None:
    if father.has_subreaper:
        level = father.pid.ns.level
        r = father.parent
        while r is not None and r.pid.ns.level == level:
            if r.is_subreaper and r.state != ZOMBIE:
                return r
            r = r.parent
    return father.ns.reaper


def _parent_links(k: Kernel, p: Process):  # noqa: ANN202
    """(pgrp, session) of p's parent; a parent outside the model is the restorer (environment)."""
    rp = p.parent
    if rp is None:
        return k.env_pgrp, k.env_session
    return rp.pgrp, rp.session


def _will_become_orphaned(k: Kernel, pgrp: dict[int, Process], ignored: Process | None) -> bool:
    for p in pgrp.values():
        if p is ignored or p.state == ZOMBIE:
            continue
        if k.base_level == 0 and p.parent is not None and p.parent is k.top_ns.reaper:
            continue  # is_global_init(real_parent): only when the model's top is the init ns
        ppgrp, psession = _parent_links(k, p)
        if ppgrp is not p.pgrp and psession is p.session:
            return False
    return True


def _kill_orphaned_pgrp(k: Kernel, tsk: Process, father: Process | None,
                       pending: _Pending) -> None:
    pgrp = tsk.pgrp
    if father is None:  # exit: tsk's own parent was perhaps the group's last outside link
        ignored: Process | None = tsk
        ppgrp, psession = _parent_links(k, tsk)
    else:  # reparent: the dying father was perhaps that link
        ignored = None
        ppgrp, psession = father.pgrp, father.session
    members = pgrp.pgrp or {}
    if pgrp.external:
        # the environment's group (the restorer's, or an external one of a captured tree) has
        # members outside the model: the restorer itself, whose parent (a shell) sits in another
        # group of the session. Found by procforge fuzz: the kernel left such stopped tasks alone.
        return
    if (ppgrp is not pgrp and psession is tsk.session
            and pgrp.stopped > 0  # has_stopped_jobs
            and _will_become_orphaned(k, members, ignored)):
        for m in list(members.values()):
            if m.state != STOPPED:
                continue  # a running member only gets SIGCONT (measured on 6.18)
            if m.unkillable:
                set_state(m, ALIVE)  # SIGCONT; an init ignores the SIGHUP
                continue
            pending.add(m)


def release(k: Kernel, proc: Process) -> None:
    """release_task: the zombie is gone; its pid, group and session references go with it."""
    if proc.parent is not None and proc.parent.children.get(proc.top) is proc:
        del proc.parent.children[proc.top]
    _unhash(k, proc)


def _unhash(k: Kernel, proc: Process) -> None:
    del k.procs[proc.top]
    pid = proc.pid
    pid.task = None
    k.detach_pgrp(proc)
    k.detach_session(proc)
    maybe_free(pid)


def do_exit_leader_thread(k: Kernel, proc: Process) -> None:
    if not proc.leader_alive:
        raise KernelRefusal(None, f"the leader thread of {proc.top} has already exited")
    if not proc.threads:
        raise KernelRefusal(None, f"{proc.top} has no other thread: its leader's exit would end "
                                  "the process (use exit)")
    proc.leader_alive = False


def do_wait(k: Kernel, parent: Process, child_nr: int) -> None:
    child = parent.children.get(child_nr)
    if child is None:
        raise KernelRefusal("ECHILD", f"{child_nr} is not a child of {parent.top}")
    if child.state != ZOMBIE:
        what = "a leader with live threads" if not child.leader_alive else child.state
        raise KernelRefusal(None, f"child {child_nr} is {what}; waitpid would block")
    release(k, child)
