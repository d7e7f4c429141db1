"""The kernel model: a state and `apply(step)`, with the kernel's rules in the sibling modules.

A step either succeeds and changes the state, or fails with the errno the kernel returns and leaves
the state as the kernel would (unchanged, except a cyclic allocator's cursor that alloc_pid had
already advanced: the kernel keeps that too). The model starts from a fresh pid namespace holding
only its init (pid 1), or from a tree (`Kernel.from_tree`), and turns back into a tree with
`snapshot()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from procforge import steps as S
from procforge.kernel import exit as kexit
from procforge.kernel import fork as kfork
from procforge.kernel import prctl as kprctl
from procforge.kernel import session as ksession
from procforge.kernel import signals as ksignals
from procforge.kernel.pids import maybe_free
from procforge.kernel.state import (
    ALIVE,
    STOPPED,
    ZOMBIE,
    Failure,
    KernelRefusal,
    Pid,
    PidNamespace,
    Process,
)
from procforge.tree import Task, Tree


class Kernel:
    """Processes by top-level pid, the top namespace, and the environment's ids."""

    def __init__(self, base_level: int = 1) -> None:
        self.base_level = base_level
        self.top_ns = PidNamespace(None)
        self.procs: dict[int, Process] = {}
        # The restorer's own group and session: outside the model, invisible from inside.
        outside = PidNamespace(None)
        self.env_pgrp = Pid((0,), outside)
        self.env_session = Pid((0,), outside)
        self.env_pgrp.external = self.env_session.external = True
        self.external_pgrp_session: dict[int, int] = {}  # visible external group -> its session

    # -------------------------------------------------------------------------------- construction

    @classmethod
    def fresh(cls, base_level: int = 1) -> Kernel:
        """A new pid namespace holding only its init, pid 1, in the restorer's group and session."""
        k = cls(base_level)
        k._spawn_init()
        return k

    def _spawn_init(self) -> Process:
        pid = self._alloc_first()
        init = Process(pid, self.top_ns)
        pid.task = init
        init.unkillable = True
        self.top_ns.reaper = init
        self.attach_pgrp(init, self.env_pgrp)
        self.attach_session(init, self.env_session)
        self.procs[1] = init
        return init

    def _alloc_first(self) -> Pid:
        pid = Pid((1,), self.top_ns)
        self.top_ns.pids[1] = pid
        self.top_ns.cursor = 2
        return pid

    # ---------------------------------------------------------------------------------- references

    def top_pid(self, nr: int) -> Pid | None:
        return self.top_ns.pids.get(nr)

    @staticmethod
    def attach_pgrp(p: Process, pgrp: Pid) -> None:
        old = p.pgrp
        stopped = p.state == STOPPED
        if old.pgrp is not None and old.pgrp.get(p.top) is p:
            del old.pgrp[p.top]
            if stopped:
                old.stopped -= 1
            maybe_free(old)
        if pgrp.pgrp is None:
            pgrp.pgrp = {}
        pgrp.pgrp[p.top] = p
        if stopped:
            pgrp.stopped += 1
        p.pgrp = pgrp

    @staticmethod
    def attach_session(p: Process, session: Pid) -> None:
        if p.sess_attached:
            if p.session is session:
                return
            p.session.sessions -= 1
            maybe_free(p.session)
        session.sessions += 1
        p.session = session
        p.sess_attached = True

    @staticmethod
    def detach_pgrp(p: Process) -> None:
        g = p.pgrp
        if g.pgrp is not None and g.pgrp.get(p.top) is p:
            del g.pgrp[p.top]
            if p.state == STOPPED:
                g.stopped -= 1
        maybe_free(g)

    @staticmethod
    def detach_session(p: Process) -> None:
        if p.sess_attached:
            p.session.sessions -= 1
            p.sess_attached = False
            maybe_free(p.session)

    # ------------------------------------------------------------------------------------ stepping

    def apply(self, step: S.Step) -> Failure | None:
        """Run one step: None on success, or the kernel's refusal."""
        # a dict keyed by the step's class: one lookup instead of a chain of isinstance tests
        handler = _HANDLERS.get(type(step))
        if handler is None:
            raise TypeError(f"not a step: {step!r}")
        try:
            handler(self, step)
        except KernelRefusal as r:
            return r.failure
        return None

    def _actor(self, nr: int, *, running: bool = True) -> Process:
        p = self.procs.get(nr)
        if p is None:
            raise KernelRefusal(None, f"there is no task {nr}")
        if p.state == ZOMBIE:
            raise KernelRefusal(None, f"task {nr} is a zombie")
        if running and p.state == STOPPED:
            raise KernelRefusal(None, f"task {nr} is stopped")
        return p

    def run(self, steps: Iterable[S.Step]) -> tuple[int, Failure] | None:
        """Apply steps in order; stop at the first failure and return (index, failure)."""
        apply = self.apply
        for i, s in enumerate(steps):
            f = apply(s)
            if f is not None:
                return i, f
        return None

    # ------------------------------------------------------------------------------------ snapshot

    def processes(self) -> Iterator[Process]:
        return iter(self.procs.values())

    def snapshot(self, source: str = "") -> Tree:
        """The state as a tree (numbers as the top namespace sees them)."""
        tasks: dict[int, Task] = {}
        namespaces: list[int] = []
        external: set[int] = set()
        top = self.top_ns
        # one pass, locals and positional Task fields: this runs once per task of million-task
        # trees (Task's fields: pid ppid pgid sid state exit_status threads leader_exited
        # child_subreaper comm)
        for p in self.procs.values():
            nr = p.pid.nr
            if p.unkillable and p.ns.reaper is p:
                namespaces.append(nr[0])
            g, s = p.pgrp, p.session
            pg = g.nr[0] if g.ns.chain[0] is top else 0
            sid = s.nr[0] if s.ns.chain[0] is top else 0
            if g.external and pg:
                external.add(pg)
            if s.external and sid:
                external.add(sid)
            par = p.parent
            state = p.state
            zombie = state == ZOMBIE
            tasks[nr[0]] = Task(
                nr, par.pid.nr[0] if par is not None else 0, pg, sid, state,
                p.status if zombie else None,
                tuple([t.nr for t in p.threads]) if p.threads else (),
                not p.leader_alive and not zombie, p.is_subreaper, p.comm,
            )
        return Tree(tasks=tasks, namespaces=tuple(sorted(namespaces)), external=frozenset(external),
                    source=source)

    @classmethod
    def from_tree(cls, tree: Tree, base_level: int = 1) -> Kernel:
        """A state holding exactly `tree`. Ids of dead leaders are held at the top level only;
        cursors start after the highest number used at each level."""
        k = cls(base_level)
        ns_by_init: dict[int, PidNamespace] = {}
        ch = tree.children()
        root = tree.root
        order: list[int] = []
        stack = [root.id]
        while stack:
            x = stack.pop()
            order.append(x)
            stack.extend(reversed(ch[x]))
        ns_of: dict[int, PidNamespace] = {}
        for x in order:
            t = tree[x]
            if tree.is_ns_init(x):
                ns = k.top_ns if x == root.id else PidNamespace(ns_of[t.ppid])
                ns_by_init[x] = ns
            else:
                ns = ns_of[t.ppid] if t.ppid in tree.tasks else k.top_ns
            ns_of[x] = ns
        for x in order:
            t = tree[x]
            ns = ns_of[x]
            pid = _place(ns, t.pid)
            p = Process(pid, ns)
            pid.task = p
            p.state = t.state  # before the group is attached: attach_pgrp counts stopped members
            p.status = t.exit_status or 0
            p.is_subreaper = bool(t.child_subreaper)
            p.comm = t.comm
            p.leader_alive = not t.leader_exited and t.state != ZOMBIE
            if x in ns_by_init:
                ns.reaper = p
                p.unkillable = True
            for th in t.threads:
                tp = _place(ns, th)
                tp.task = p
                p.threads.append(tp)
            parent = k.procs.get(t.ppid)
            p.parent = parent
            if parent is not None:
                parent.children[x] = p
            k.procs[x] = p
        # has_child_subreaper: set where an ancestor at the same level is a subreaper (the kernel
        # would have set it by fork or by propagation); a stale hint cannot be recovered from a
        # tree.
        for x in order:
            p = k.procs[x]
            par = p.parent
            if par is not None and not p.unkillable:
                p.has_subreaper = par.has_subreaper or par.is_subreaper
        env_ids: dict[int, Pid] = {}
        for x in order:
            t = tree[x]
            p = k.procs[x]
            k._attach_id(p, t.pgid, env_ids, tree, group=True)
            k._attach_id(p, t.sid, env_ids, tree, group=False)
            p.session_leader = t.sid == x
        k.procs = {x: k.procs[x] for x in tree.tasks}  # the file's order, so snapshot() keeps it
        for ns in set(ns_of.values()) | {k.top_ns}:
            ns.cursor = max(ns.pids, default=0) + 1
        return k

    def _attach_id(self, p: Process, nr: int, env_ids: dict[int, Pid], tree: Tree,
                   group: bool) -> None:
        if nr == 0:
            pid = self.env_pgrp if group else self.env_session
        elif nr in self.procs:
            pid = self.procs[nr].pid
        else:
            pid = env_ids.get(nr) or self.top_ns.pids.get(nr)
            if pid is None:
                pid = _place(self.top_ns, (nr,))
                pid.external = nr in tree.external
                env_ids[nr] = pid
        if group:
            self.attach_pgrp(p, pid)
            if pid.external:
                self.external_pgrp_session[nr] = tree[p.top].sid
        else:
            self.attach_session(p, pid)


def _exit(k: Kernel, s: S.Exit) -> None:
    # a signal can kill a stopped task; an exit code needs the task to run
    p = k._actor(s.task, running=not s.status & 0x7F)
    kexit.do_exit(k, p, ksignals.death_status(p, s.status))


_HANDLERS: dict[type, Callable[[Kernel, Any], None]] = {
    S.Fork: lambda k, s: kfork.do_fork(k, k._actor(s.parent), s.pid, s.clone_parent, s.new_ns),
    S.Thread: lambda k, s: kfork.do_thread(k, k._actor(s.task), s.tid),
    S.Setsid: lambda k, s: ksession.do_setsid(k, k._actor(s.task)),
    S.Setpgid: lambda k, s: ksession.do_setpgid(k, k._actor(s.caller), s.target, s.pgid),
    S.Subreaper: lambda k, s: kprctl.do_subreaper(k._actor(s.task), s.on),
    S.Sigchld: lambda k, s: ksignals.do_sigchld(k._actor(s.task), s.ignore),
    S.Exit: _exit,
    S.ExitLeaderThread: lambda k, s: kexit.do_exit_leader_thread(k, k._actor(s.task)),
    S.Wait: lambda k, s: kexit.do_wait(k, k._actor(s.parent), s.child),
    S.Stop: lambda k, s: ksignals.do_stop(k._actor(s.task, running=False)),
    S.Comm: lambda k, s: kprctl.do_comm(k._actor(s.task), s.name),
}


def _place(ns: PidNamespace, nrs: tuple[int, ...]) -> Pid:
    pid = Pid(tuple(nrs), ns)
    n: PidNamespace | None = ns
    for i in range(len(nrs) - 1, -1, -1):
        assert n is not None
        n.pids[nrs[i]] = pid
        n = n.parent
    return pid


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of running a step list: the failing step's index and failure, if any."""

    kernel: Kernel
    failed_at: int | None = None
    failure: Failure | None = None


def simulate(steps: Iterable[S.Step], start: Tree | None = None, base_level: int = 1) -> Outcome:
    k = Kernel.from_tree(start, base_level) if start is not None else Kernel.fresh(base_level)
    r = k.run(steps)
    if r is None:
        return Outcome(k)
    return Outcome(k, r[0], r[1])


__all__ = ["ALIVE", "Kernel", "Outcome", "simulate"]
