"""Random reachable trees: a random valid history, run in the kernel model from a fresh namespace.

Why a history rather than a random tree: a tree drawn at random is usually unreachable (a group
in a session its leader never made, a zombie whose parent could not have waited), and proving
otherwise is the planner's hard problem. A tree the model produced by system calls is reachable by
construction, and its history is a known-good plan to test the planner and the executor against.

The generator chooses only steps that the kernel accepts: each action checks the rule it relies
on against the model's state (the same predicates as procforge.kernel, cheap, O(1) or bounded)
before it emits a step, and every emitted step is applied at once; a refusal is a generator bug and
raises. Effects it cannot foresee (SIGHUP of orphaned groups, a namespace's death, auto-reap) are
simply read back from the model. Randomness comes only from `random.Random(seed)`: same seed, same
history.
"""

from __future__ import annotations

import gc
import random
from bisect import bisect
from collections.abc import Callable, Iterable

from procforge import steps as S
from procforge.errors import InvalidInput
from procforge.kernel.machine import Kernel
from procforge.kernel.state import ALIVE, MAX_PID_NS_LEVEL, STOPPED, ZOMBIE, Process
from procforge.tree import Tree

FEATURES = (
    "sessions", "groups", "dead_leaders", "zombies", "subreapers", "clone_parent", "namespaces",
    "threads", "stopped", "leader_exit",
)
MAX_TASKS = 4_000_000  # below the top namespace's pid_max (4194304), with room for threads and ids

# Signals whose default action kills (term or core); a stop or ignore signal cannot make a zombie.
_TERM = (1, 2, 9, 10, 12, 13, 14, 15, 16, 26, 27, 29, 30, 34, 40, 50, 64)
_CORE = (3, 4, 5, 6, 7, 8, 11, 24, 25, 31)
_NAMES = ("worker", "sh", "sshd", "cron", "db", "nginx", "agent", "job", "init", "helper")


def parse_features(text: str | None) -> frozenset[str]:
    """`all` (default), `none`, or a comma list of names; `-name` removes one (`all,-threads`)."""
    if text is None:
        return frozenset(FEATURES)
    out: set[str] = set()
    for raw in text.split(","):
        name = raw.strip().replace("-", "_") if not raw.strip().startswith("-") else raw.strip()
        if not name:
            continue
        if name == "all":
            out |= set(FEATURES)
        elif name == "none":
            out.clear()
        elif name.startswith("-") and name[1:].replace("-", "_") in FEATURES:
            out.discard(name[1:].replace("-", "_"))
        elif name in FEATURES:
            out.add(name)
        else:
            raise InvalidInput(f"--features: unknown feature {raw.strip()!r} (known: all, none, "
                               f"{', '.join(FEATURES)})")
    return frozenset(out)


def generate(tasks: int, seed: int,
             features: Iterable[str] = FEATURES) -> tuple[Tree, list[S.Step]]:
    """A random reachable tree of exactly `tasks` tasks and the history that builds it."""
    if not 1 <= tasks <= MAX_TASKS:
        raise InvalidInput(f"--tasks must be between 1 and {MAX_TASKS}, not {tasks}")
    feats = frozenset(features)
    unknown = feats - set(FEATURES)
    if unknown:
        raise InvalidInput(f"unknown feature {sorted(unknown)[0]!r} (known: {', '.join(FEATURES)})")
    # The model is a graph of millions of small objects that live until the end: the cyclic
    # garbage collector would rescan them over and over (half the run time at 1M tasks) and
    # find nothing to free, so it is paused for the run.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        g = _Generator(tasks, seed, feats)
        g.run()
        tree = g.k.snapshot(source=f"procforge generate --tasks {tasks} --seed {seed}"
                            f" --features {','.join(f for f in FEATURES if f in feats) or 'none'}")
    finally:
        if was_enabled:
            gc.enable()
    return tree, g.steps


class _Generator:
    """The state of one generation: the model, the history so far, and pools of candidate pids.

    Pools are lists with lazy deletion: a pid is checked against the model when drawn and dropped
    if it no longer names a fitting process, so that picking stays O(1) amortized.
    """

    def __init__(self, tasks: int, seed: int, feats: frozenset[str]) -> None:
        self.k = Kernel.fresh()
        self.procs = self.k.procs
        self.target = tasks
        self.rng = random.Random(seed)
        self.random = self.rng.random  # bound once: drawn several times per step
        self.f = feats
        self.steps: list[S.Step] = []
        self.live: list[int] = [1]
        self.in_live: set[int] = {1}
        self.zombies: list[int] = []
        self.last_child = 1
        self.inits: list[int] = []  # namespace inits made so far (some dead): nesting candidates
        # rare events scale so that small trees still show them and big ones are not flooded
        self.p_ns = min(0.05, 4 / tasks + 0.001)
        self.p_explicit = 0.05
        actions: list[tuple[float, Callable[[], bool]]] = [(50.0, self.fork)]
        want = {
            "sessions": [(4.0, self.setsid)],
            "groups": [(7.0, self.setpgid)],
            "dead_leaders": [(1.5, self.dead_leader)],
            "zombies": [(1.0, self.sigchld)],
            "subreapers": [(2.0, self.subreaper), (2.0, self.orphan_under_subreaper)],
            "threads": [(3.0, self.thread)],
            "leader_exit": [(1.0, self.exit_leader_thread)],
            "stopped": [(1.0, self.stop)],
            "namespaces": [(0.3, self.kill_namespace)],
        }
        for name, acts in want.items():
            if name in feats:
                actions.extend(acts)
        actions.append((8.0, self.exit))
        actions.append((4.0, self.wait))
        actions.append((0.5, self.comm))
        total = sum(w for w, _ in actions)
        acc = 0.0
        self.cum: list[float] = []
        self.acts: list[Callable[[], bool]] = []
        for w, a in actions:
            acc += w / total
            self.cum.append(acc)
            self.acts.append(a)
        self.cum[-1] = 1.0

    # ------------------------------------------------------------------------------------ plumbing

    def emit(self, step: S.Step) -> None:
        failure = self.k.apply(step)
        if failure is not None:
            raise AssertionError("generator emitted a step the model refuses: "
                                 f"{S.format_step(step)}: {failure}")
        self.steps.append(step)

    def run(self) -> None:
        procs, target, random_ = self.procs, self.target, self.random
        cum, acts, fork = self.cum, self.acts, self.fork
        while len(procs) < target:
            if not acts[bisect(cum, random_())]():
                fork()

    def pick_live(self) -> Process | None:
        """A random live (running or stopped) process, None if the draw hit a dead entry."""
        live = self.live
        i = int(self.random() * len(live))
        nr = live[i]
        p = self.procs.get(nr)
        if p is None or p.state == ZOMBIE:
            live[i] = live[-1]
            live.pop()
            self.in_live.discard(nr)
            return None
        return p

    def pick_running(self) -> Process | None:
        """A random running process (four draws), or None."""
        pick = self.pick_live
        for _ in range(4):
            p = pick()
            if p is not None and p.state == ALIVE:
                return p
        return None

    def free_pids(self, p: Process, new_ns: bool) -> tuple[int, ...] | None:
        """Explicit pids (set_tid) for a child of p: free numbers just past each level's cursor.
        Names all levels, or only the innermost ones (a set_tid shorter than the levels)."""
        levels = list(p.ns.chain)
        nrs: list[int] = []
        rng = self.rng
        for ns in levels:
            nr = ns.cursor + rng.randrange(1, 50)
            if nr >= ns.pid_max or nr in ns.pids:
                return None
            nrs.append(nr)
        if new_ns:
            nrs.append(1)
        keep = rng.randrange(1, len(nrs) + 1)
        return tuple(nrs[-keep:])

    def new_child_nr(self, pid: tuple[int, ...] | None, levels: int) -> int:
        """The top-level number the last fork got (explicit, or the top cursor's last value)."""
        if pid is not None and len(pid) == levels:
            return pid[0]
        return self.k.top_ns.cursor - 1

    # ------------------------------------------------------------------------------------- actions

    def fork(self, parent: Process | None = None, plain: bool = False) -> bool:
        """A fork, sometimes with CLONE_PARENT, a new namespace or explicit pids (not if plain:
        a helper that needs the child right under `parent`, in its namespace)."""
        p = parent or self.pick_running() or self.procs[1]
        r = 1.0 if plain else self.random()  # one draw, cut into disjoint ranges
        cp = newns = False
        pid = None
        if r < 0.2:
            cp = (r < 0.08 and "clone_parent" in self.f and not p.unkillable
                  and p.parent is not None)
            r = self.rng.random()
            newns = ("namespaces" in self.f and r < self.p_ns * 5
                     and self.k.base_level + p.ns.level + 1 <= MAX_PID_NS_LEVEL)
            if r > 1 - self.p_explicit * 5:
                pid = self.free_pids(p, newns)
            if newns and parent is None and self.inits and self.rng.random() < 0.5:
                # nest: half of the new namespaces start inside an existing one
                q = self.k.procs.get(self.inits[int(self.rng.random() * len(self.inits))])
                if (q is not None and q.state == ALIVE and q.unkillable
                        and self.k.base_level + q.ns.level + 1 <= MAX_PID_NS_LEVEL):
                    p, cp = q, False
                    pid = None
        step = S.Fork(p.pid.nr[0], pid, cp, newns)
        if self.k.apply(step) is not None:
            self.emit(step)  # raises with the reason
        self.steps.append(step)
        nr = self.last_child = self.new_child_nr(pid, p.ns.level + 1 + newns)
        if nr not in self.in_live:
            self.in_live.add(nr)
            self.live.append(nr)
        if newns:
            self.inits.append(nr)
        return True

    def exit(self) -> bool:
        p = self.pick_live()
        if p is None or p.unkillable:
            return False
        parent = p.parent
        if "zombies" not in self.f and (parent is None or parent.state != ALIVE):
            return False
        self.emit(S.Exit(p.top, self.status(p)))
        self.after_exit(p)
        return True

    def after_exit(self, p: Process) -> None:
        """A new zombie joins the pool, or is reaped at once when zombies are not wanted."""
        if p.state != ZOMBIE or self.k.procs.get(p.top) is not p:
            return  # auto-reaped (its parent ignores SIGCHLD)
        if "zombies" in self.f:
            self.zombies.append(p.top)
        elif p.parent is not None and p.parent.state == ALIVE:
            self.emit(S.Wait(p.parent.top, p.top))

    def status(self, p: Process) -> int:
        rng = self.rng
        if p.state == STOPPED or rng.random() < 0.3:
            if rng.random() < 0.3:
                return rng.choice(_CORE) | (0x80 if rng.random() < 0.5 else 0)
            return rng.choice(_TERM)
        r = rng.random()
        code = 0 if r < 0.5 else 1 if r < 0.7 else rng.randrange(256)
        return code << 8

    def wait(self) -> bool:
        zs = self.zombies
        while zs:
            i = self.rng.randrange(len(zs))
            nr = zs[i]
            z = self.k.procs.get(nr)
            if z is None or z.state != ZOMBIE:
                zs[i] = zs[-1]
                zs.pop()
                continue
            par = z.parent
            if par is None or par.state != ALIVE:
                return False
            zs[i] = zs[-1]
            zs.pop()
            self.emit(S.Wait(par.top, nr))
            return True
        return False

    def dead_leader(self) -> bool:
        """A group or session leader dies and is reaped while members keep its id."""
        if self.rng.random() < 0.5:
            return self.new_dead_leader()
        for _ in range(4):
            p = self.pick_live()
            if p is None or p.unkillable or p.state != ALIVE:
                continue
            pid = p.pid
            members = len(pid.pgrp) if pid.pgrp else 0
            if members < 2 and pid.sessions < 2:
                continue
            parent = p.parent
            if parent is None or parent.state != ALIVE:
                continue
            self.emit(S.Exit(p.top, self.status(p)))
            if self.k.procs.get(p.top) is p and p.parent is not None and p.parent.state == ALIVE:
                self.emit(S.Wait(p.parent.top, p.top))
            return True
        return False

    def new_dead_leader(self) -> bool:
        """Make one: a fresh child starts a session (its new pid names no group, so setsid
        succeeds), forks a member, then dies and is reaped by its parent."""
        p = self.pick_running()
        if p is None:
            return False
        self.fork(p, plain=True)
        leader = self.k.procs[self.last_child]
        self.emit(S.Setsid(leader.top))
        self.fork(leader, plain=True)
        self.emit(S.Exit(leader.top, self.status(leader)))
        if self.k.procs.get(leader.top) is leader and leader.parent is p and p.state == ALIVE:
            self.emit(S.Wait(p.top, leader.top))
        return True

    def setsid(self) -> bool:
        p = self.pick_running()
        if p is None:
            return False
        if p.session_leader or p.pid.pgrp:
            # ksys_setsid would refuse (a leader already, or a group is named after it): make a
            # child, whose fresh pid names no group, and let it start the session
            self.fork(p, plain=True)
            p = self.k.procs[self.last_child]
        self.emit(S.Setsid(p.top))
        return True

    def setpgid(self) -> bool:
        rng = self.rng
        t = self.pick_live()
        if t is None:
            if self.zombies and rng.random() < 0.5:
                z = self.k.procs.get(self.zombies[rng.randrange(len(self.zombies))])
                if z is None or z.state != ZOMBIE:
                    return False
                t = z  # a zombie child can still be moved (sys_setpgid does not look at state)
            else:
                return False
        caller = t.parent if (rng.random() < 0.7 or t.state != ALIVE) else t
        if caller is None or caller.state != ALIVE or t.session_leader:
            return False
        if caller is not t and t.session is not caller.session:
            return False
        # candidate groups: its own, the caller's, the grandparent's, a random process's
        cands = [t.pid, caller.pgrp]
        if caller.parent is not None:
            cands.append(caller.parent.pgrp)
        q = self.pick_live()
        if q is not None:
            cands.append(q.pgrp)
        g = cands[rng.randrange(len(cands))]
        if g is t.pgrp:
            return False
        if g is not t.pid:
            if not g.pgrp or g.nr_in(caller.ns) is None:
                return False
            if next(iter(g.pgrp.values())).session is not caller.session:
                return False
            if t.unkillable and g.ns.is_within(t.ns):
                # an init in a group named after a pid of its own namespace can never die: its
                # zap_pid_ns_processes waits for that pid, which it holds itself (docs/fuzz.md)
                return False
        self.emit(S.Setpgid(caller.top, t.top, g.nr[0]))
        return True

    def subreaper(self) -> bool:
        p = self.pick_running()
        if p is None:
            return False
        on = not p.is_subreaper or self.rng.random() < 0.2
        self.emit(S.Subreaper(p.top, on))
        return True

    def orphan_under_subreaper(self) -> bool:
        """A process with children dies: they are adopted (by a subreaper if one is near)."""
        p = self.pick_running()
        if p is None or p.unkillable or not p.children or not p.has_subreaper:
            return False
        if "zombies" not in self.f and (p.parent is None or p.parent.state != ALIVE):
            return False
        self.emit(S.Exit(p.top, self.status(p)))
        self.after_exit(p)
        return True

    def sigchld(self) -> bool:
        p = self.pick_running()
        if p is None:
            return False
        # SIG_IGN is inherited by fork: keep it rare, or zombies would vanish from whole subtrees
        ignore = not p.sigchld_ign and self.rng.random() < 0.5
        self.emit(S.Sigchld(p.top, ignore))
        return True

    def thread(self) -> bool:
        p = self.pick_running()
        if p is None or len(p.threads) >= 6:
            return False
        tid = None
        if self.rng.random() < self.p_explicit:
            tid = self.free_pids(p, False)
        self.emit(S.Thread(p.top, tid))
        return True

    def exit_leader_thread(self) -> bool:
        p = self.pick_running()
        if p is None or not p.leader_alive:
            return False
        if not p.threads:
            self.emit(S.Thread(p.top, None))  # the group needs another thread to live on
        self.emit(S.ExitLeaderThread(p.top))
        return True

    def stop(self) -> bool:
        """SIGSTOP a task whose group keeps a link out of it (its parent is in another group of
        the same session), so that the group is not orphaned now."""
        p = self.pick_running()
        if p is None:
            return False
        par = p.parent
        if p.unkillable or par is None or par.pgrp is p.pgrp or par.session is not p.session:
            # make such a task: a fresh child that its parent moves into a group of its own
            # (setpgid by the parent: its child, same session, not a session leader)
            self.fork(p, plain=True)
            c = self.k.procs[self.last_child]
            self.emit(S.Setpgid(p.top, c.top, c.top))
            p = c
        self.emit(S.Stop(p.top))
        return True

    def kill_namespace(self) -> bool:
        """A small namespace's init dies, taking the namespace with it."""
        p = self.pick_running()
        if p is None or p is self.k.procs[1]:
            return False
        ns = p.ns
        init = ns.reaper
        if init is None or init is not p and (init.state != ALIVE or self.rng.random() < 0.5):
            return False
        if len(ns.pids) > 64 or init.parent is None:
            return False
        if init.pgrp is not init.pid and init.pgrp.ns.is_within(ns):
            return False  # the init holds a pid of its namespace as its group: zap never ends
        for pid in ns.pids.values():  # zap_pid_ns_processes must be able to finish
            if pid.pgrp and any(not m.ns.is_within(ns) for m in pid.pgrp.values()):
                return False
        if "zombies" not in self.f and init.parent.state != ALIVE:
            return False
        status = self.status(init)
        if status & 0x7F:
            status = 9  # an init dies only by SIGKILL from outside (sig_task_ignored)
        self.emit(S.Exit(init.top, status))
        self.after_exit(init)
        return True

    def comm(self) -> bool:
        p = self.pick_running()
        if p is None:
            return False
        self.emit(S.Comm(p.top, self.rng.choice(_NAMES)))
        return True
