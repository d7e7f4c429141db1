"""Build a plan: the steps that turn a state holding only the root into the target tree.

How a task gets its place (docs/planner.md has the proofs and examples):
- its *session* is fixed at birth (the creator's) or by its own setsid, so a task is created by a
  process that is in its session at that moment: its parent (if the parent is, or was before the
  parent's own setsid), or an *agent*: a child of the parent in that session, which forks it with
  CLONE_PARENT (the child inherits the agent's session and group, and gets the agent's parent);
- when the parent has no such child, a dead session leader (the session id is nobody's pid any more)
  is recreated as a helper child of the parent, which then serves as the agent;
- otherwise the task is *adopted*: a member of its session that lives below the parent forks a
  helper, the helper forks the task and exits, and the kernel reparents the task to the nearest
  subreaper, which the parent is made for that moment (or the namespace init);
- groups come after sessions: every group is made by its leader (or a helper holding a dead leader's
  id), members join it themselves, leaders that left their group move last;
- deaths come last: helpers exit and are reaped by their parents, then zombies exit with their
  status; then subreaper flags, names, leader-thread exits, and finally SIGSTOPs, so that no exit can
  ever orphan a group with stopped members.
The builder runs every step in the kernel model as it emits it, so a plan it returns is one the model
has already executed; `verify` then compares the final state with the target.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from procforge import steps as S
from procforge.kernel.machine import Kernel
from procforge.kernel.state import Pid, Process
from procforge.planner.pidpool import PidPool
from procforge.tree import STOPPED, ZOMBIE, Task, Tree


class Unreachable(Exception):
    """No plan: the reason names the tasks and the rule that forbids the tree."""

    def __init__(self, reason: str, tasks: tuple[int, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tasks = tasks


@dataclass
class Helper:
    pid: tuple[int, ...]
    parent: int
    role: str  # "session"/"group" (a dead leader's id), "adopt", "lend", "exile", "keeper"
    why: str


@dataclass
class BuildResult:
    steps: list[S.Step]
    helpers: list[Helper] = field(default_factory=list)
    kernel: Kernel | None = None


def start_state(tree: Tree, base_level: int = 1) -> Kernel:
    """The state a plan starts from: only the root, in the restorer's group and session.

    In a fresh namespace the root is pid 1, its init; a root that is not an init (a subtree restored
    into an existing namespace) starts as a child of the restorer, outside the model."""
    root = tree.root
    k = Kernel(base_level)
    if tree.is_ns_init(root.id):
        if root.pid != (1,):
            raise Unreachable(f"the root {root.id} is a namespace init but its pid is not 1")
        k._spawn_init()
    else:
        k.top_ns.reaper_outside = True  # the existing namespace has its init, outside the plan
        pid = Pid(root.pid, k.top_ns)
        k.top_ns.pids[root.id] = pid
        k.top_ns.cursor = root.id + 1
        p = Process(pid, k.top_ns)
        pid.task = p
        k.attach_pgrp(p, k.env_pgrp)
        k.attach_session(p, k.env_session)
        k.procs[root.id] = p
    for attr, nr in (("env_pgrp", root.pgid), ("env_session", root.sid)):
        if nr and nr in tree.external:
            # a visible external id: number it in the top namespace
            env: Pid = getattr(k, attr)
            env.nr = (nr,)
            env.ns = k.top_ns
            k.top_ns.pids[nr] = env
            if attr == "env_pgrp" and root.sid in tree.external:
                k.external_pgrp_session[nr] = root.sid
    return k


class Builder:
    def __init__(self, tree: Tree, base_level: int = 1, avoid: frozenset[int] = frozenset()) -> None:
        self.t = tree
        self.k = start_state(tree, base_level)
        self.steps: list[S.Step] = []
        self.helpers: list[Helper] = []
        self.children = tree.children()
        self.ns_chain = _ns_chains(tree)
        self.pool = PidPool(tree, self.ns_chain, avoid)
        self.done: set[int] = {tree.root.id}
        self.dead_sessions_made: set[int] = set()  # dead session ids already recreated by a helper
        self.deferred: list[int] = []
        self.group_ids = {x.pgid for x in tree if x.pgid in tree.tasks}
        self.group_members: dict[int, list[int]] = {}
        for x in tree:
            self.group_members.setdefault(x.pgid, []).append(x.id)
        self._gw: dict[int, int | None] = {}
        self._bw: dict[int, int | None] = {}
        self.waiting: dict[int, list[int]] = {}  # group id -> tasks whose children wait for it
        self.by_parent: dict[tuple[int, int], list[int]] = {}
        self.by_session: dict[int, list[int]] = {}
        self._dead_group_chain: dict[int, tuple[int, ...]] = {}
        self.dead_home = self._dead_session_homes()
        self.exile = self._exiles()  # live session leader -> the task it must first live below
        self.exiled: list[tuple[int, int, int]] = []  # (helper, its parent, the leader's parent)

    # ------------------------------------------------------------------------------------ helpers

    def _is_tree_session(self, sid: int) -> bool:
        return sid != 0 and sid not in self.t.external

    def emit(self, step: S.Step) -> None:
        f = self.k.apply(step)
        if f is not None:
            raise Unreachable(f"the model refused `{S.format_step(step)}`: {f}")
        self.steps.append(step)
        self._note(step)

    def proc(self, pid: int) -> Process:
        return self.k.procs[pid]

    def session_of(self, pid: int) -> int:
        return self.proc(pid).session.top

    def _birth_wanted(self, c: Task) -> int | None:
        """The session a session leader should be born in: that of a child it must make there
        (or that a leader child must itself be born in)."""
        memo = self._bw
        if c.id in memo:
            return memo[c.id]
        memo[c.id] = None
        memo[c.id] = w = self._birth_wanted_uncached(c)
        return w

    def _birth_wanted_uncached(self, c: Task) -> int | None:
        dead: int | None = None
        for x in self.children[c.id]:
            ct = self.t[x]
            need = self._birth_wanted(ct) if ct.sid == x else ct.sid
            if need is None or need == c.id:
                continue
            lead = self.t.tasks.get(need)
            if lead is not None and lead.ppid == c.id and lead.id != x:
                continue  # that session's leader is c's child: it forks ct with CLONE_PARENT
            if lead is not None and lead.id != x and self._below(lead.id, c.id):
                continue  # that session's leader lives below c: c adopts ct as a subreaper
            if lead is None and self._is_tree_session(need) and self.dead_home.get(need) == c.id:
                continue  # a dead leader, recreated as c's child, forks ct with CLONE_PARENT
            if lead is None and self._is_tree_session(need):
                # a dead leader can be recreated below c: born elsewhere if another need insists
                dead = dead if dead is not None else need
                continue
            return need
        return dead

    def _below(self, x: int, anc: int) -> bool:
        """x is a proper descendant of anc in the target tree, in the same namespace."""
        chain = self.ns_chain[anc]
        if self.ns_chain[x] != chain:
            return False
        y = self.t[x].ppid
        while y in self.t.tasks:
            if y == anc:
                return True
            y = self.t[y].ppid
        return False

    def _first_foreign(self, c: Task) -> int | None:
        for x in self.children[c.id]:
            ct = self.t[x]
            if ct.sid != c.id and ct.sid != x:
                return ct.sid
        return None

    def _dead_session_homes(self) -> dict[int, int]:
        """Where to recreate each dead session leader: as a child of the deepest parent that must
        have a child born in that session while being outside it (a leader born there makes its
        own children there, so its parent is the one in need); members for shallower parents (its
        ancestors) are then adopted from below. Birth sessions depend on the homes, so two rounds."""
        depth: dict[int, int] = {}
        for x in _parents_first(self.t):
            t = self.t[x]
            depth[x] = depth[t.ppid] + 1 if t.ppid in depth else 0
        home: dict[int, int] = {}
        for round_ in range(2):
            if round_:
                self.dead_home = home
                self._bw = {}
                home = {}
            for c in self.t:
                s = c.sid if c.sid != c.id else (self._birth_wanted(c) if round_ else None)
                if s is None or not self._is_tree_session(s) or s in self.t.tasks:
                    continue
                par = self.t.tasks.get(c.ppid)
                if par is None or par.sid == s:
                    continue
                if par.sid == par.id and par.id != self.t.root.id and (
                        (self._birth_wanted(par) if round_ else self._first_foreign(par)) == s):
                    continue  # par is born in s itself and makes c before its own setsid
                if s not in home or depth[par.id] > depth[home[s]]:
                    home[s] = par.id
        self._bw = {}
        return home

    # --------------------------------------------------------------------------------- creation

    def fork(self, creator: int, c: Task, clone_parent: bool = False) -> bool:
        """Make c now; False (nothing emitted) when c must be born in a group that nobody has made
        yet, because its leader is not made yet: c then waits among the deferred tasks."""
        newns = self.t.is_ns_init(c.id)
        back = None
        cp = self.proc(creator)
        need = self._birth_group(c)
        if need is not None and cp.pgrp.top != need:
            g = self.k.top_pid(need)
            if (g is None or not g.pgrp) and need in self.t.tasks and need not in self.done:
                if c.sid != c.id:
                    return False
            else:
                back = self._lend_group(creator, c, need)
                if self.proc(creator).pgrp.top != need and \
                        self._fork_via_group_helper(creator, c, clone_parent, need):
                    return True
                g = self.k.top_pid(need)
                if (g is None or not g.pgrp) and need in self.t.tasks and c.sid != c.id and need == c.pgid:
                    return False  # its leader makes that group later: wait for it
        self.emit(S.Fork(creator, c.pid, clone_parent, newns))
        if back is not None:
            self.emit(back)
        self.done.add(c.id)
        self.queue.append(c.id)
        return True

    def _birth_group(self, c: Task) -> int | None:
        """The group c must be born in (None: any): its own when it can never join it, or, for a
        session leader, the one its birth-session children must inherit from it."""
        if c.sid != c.id:
            if c.pgid == 0 or c.pgid in self.t.external or not self._must_inherit(c):
                return None
            return c.pgid
        w = self._group_wanted(c)
        return None if w is None or w == 0 or w in self.t.external else w

    def _fork_via_group_helper(self, creator: int, c: Task, clone_parent: bool, need: int) -> bool:
        """The creator cannot enter c's group (it leads a session, say): a helper child of c's
        parent, made by the creator, enters the group and forks c with CLONE_PARENT, then exits."""
        cp = self.proc(creator)
        g = self.k.top_pid(need)
        if g is None or not g.pgrp or next(iter(g.pgrp.values())).session is not cp.session:
            return False
        if g.nr_in(cp.ns) is None:
            return False
        parent = cp.parent.top if clone_parent and cp.parent is not None else creator
        hp = self.pool.take(self.ns_chain[creator])
        self.emit(S.Fork(creator, hp, clone_parent))
        self.emit(S.Setpgid(hp[0], hp[0], need))
        self.emit(S.Fork(hp[0], c.pid, True, self.t.is_ns_init(c.id)))
        self.emit(S.Exit(hp[0], 0))
        self.emit(S.Wait(parent, hp[0]))
        self.helpers.append(Helper(hp, parent, "lend", (
            f"task {c.id} must be born in group {need}, which its namespace cannot name and its "
            f"creator {creator} cannot enter: helper {hp[0]} enters it and forks {c.id}")))
        self.done.add(c.id)
        self.queue.append(c.id)
        return True

    def fork_or_defer(self, creator: int, c: Task) -> None:
        if not self.fork(creator, c):
            self.deferred.append(c.id)

    def _visible(self, pgid: int, p: Process) -> bool:
        if pgid == 0 or pgid in self.t.external:
            return True  # inherited, never joined
        g = self.k.top_pid(pgid)
        return g is None or g.nr_in(p.ns) is not None

    def _lend_group(self, creator: int, c: Task, need: int) -> S.Step | None:
        """c must be born in a group it can never join (its namespace cannot name it): the creator
        joins that group for the fork (by itself, or by its parent when the creator is a namespace
        init), making a dead leader's group first if needed, and goes back when it can."""
        cp = self.proc(creator)
        g = self.k.top_pid(need)
        if (g is None or not g.pgrp) and need not in self.t.tasks and cp.session.top == c.sid:
            self._dead_group_leader(creator, need, f"task {c.id} must be born in it", lent=creator)
            g = self.k.top_pid(need)
        elif (g is None or not g.pgrp) and need in self.k.procs:
            self._make_group_early(need)
            g = self.k.top_pid(need)
        if g is None or not g.pgrp or next(iter(g.pgrp.values())).session is not cp.session:
            return None
        if cp.unkillable and g is not cp.pid and g.ns.is_within(cp.ns):
            return None  # an init in a group of its own namespace could never die: a helper does it
        par = cp.parent
        if not cp.session_leader and g.nr_in(cp.ns) is not None:
            by = creator
        elif par is not None and par.session is cp.session and g.nr_in(par.ns) is not None \
                and not cp.session_leader:
            by = par.top
        else:
            return None
        prev = cp.pgrp
        if prev is cp.pid:
            back: S.Step | None = S.Setpgid(by, creator, 0)
        elif len(prev.pgrp or ()) > 1 and prev.nr_in(self.proc(by).ns) is not None:
            back = S.Setpgid(by, creator, prev.top)
        else:
            back = None
        if back is None and not self._done_with_group(creator, prev.top):
            return None  # it could never come back to the group it still needs: a helper does it
        self.emit(S.Setpgid(by, creator, need))
        return back

    def _done_with_group(self, creator: int, g: int) -> bool:
        """The creator (a tree task) need not stay in group g: g is not its final group and no child
        still to be made must be born in g."""
        me = self.t.tasks.get(creator)
        if me is None or me.pgid == g:
            return False
        return not any(k not in self.done and self._birth_group(self.t[k]) == g
                       for k in self.children[creator])

    def _make_group_early(self, g: int) -> None:
        """The leader g exists but has not made its group yet: it does so now, unless one of its
        children must still be born in the group g is in now."""
        lead = self.proc(g)
        if lead.session_leader or lead.pgrp is lead.pid or lead.state != "alive":
            return
        now = lead.pgrp.top
        if any(k not in self.done and self._group_wanted(self.t[k]) == now for k in self.children.get(g, ())):
            return
        self.emit(S.Setpgid(g, g, 0))
        self._group_made(g)

    def _traps_init(self, creator: int, g: int) -> bool:
        """A helper made by `creator` would live inside the namespace of an init that is in group g:
        that init could never die (zap_pid_ns_processes waits for every pid of its namespace, and
        the init itself would hold one as its group id)."""
        chain = self.ns_chain[creator]
        for m in self.group_members.get(g, ()):
            if self.t.is_ns_init(m):
                mc = self.ns_chain[m]
                if chain[: len(mc)] == mc:
                    return True
        return False

    def _dead_group_leader(self, creator: int, g: int, why: str, lent: int | None = None) -> None:
        """Recreate the dead leader of group g as a helper made by `creator` (or by an ancestor of it
        outside the namespace of any init that is, or is lent, in that group)."""

        def traps(x: int) -> bool:
            if self._traps_init(x, g):
                return True
            if lent is not None and self.t.is_ns_init(lent):
                lc = self.ns_chain[lent]
                return self.ns_chain[x][: len(lc)] == lc
            return False

        if traps(creator):
            # make it from the nearest ancestor outside those namespaces, in the same session
            q = self.proc(creator).parent
            sess = self.proc(creator).session
            while q is not None and (traps(q.top) or q.state != "alive" or q.session is not sess):
                q = q.parent
            if q is not None:  # else no choice: the tree itself traps that init (see trapped_inits)
                creator = q.top
        pid = self.pool.take(self.ns_chain[creator], top=g)
        self.emit(S.Fork(creator, pid))
        self.emit(S.Setpgid(g, g, 0))
        self.helpers.append(Helper(pid, creator, "group", f"group {g} has no leader in the tree; {why}"))

    def enter_group(self, p: Task) -> None:
        """Move a newborn into its group now when that group exists, so that its children are born
        in it (a task in a nested namespace cannot join a group of an outer one later)."""
        me = self.proc(p.id)
        if p.sid == p.id:
            return
        if p.id in self.group_ids:
            if me.pgrp is not me.pid:
                self.emit(S.Setpgid(p.id, p.id, 0))
                self._group_made(p.id)
            return
        if p.pgid == 0 or p.pgid in self.t.external or me.pgrp.top == p.pgid:
            return
        g = self.k.top_pid(p.pgid)
        if g is None or not g.pgrp:
            return
        if self._visible(p.pgid, me) or (me.parent is not None and me.parent.session is me.session):
            self.join(p)

    def after_birth(self, p: Task) -> None:
        """Threads right away; then the children that must be born in p's birth session or group,
        before p leaves them; then p's own setsid and group; then the children p can make itself."""
        for th in p.threads:
            self.emit(S.Thread(p.id, th))
        kids = [self.t[x] for x in self.children[p.id]]
        me = self.proc(p.id)
        born_in, born_group = me.session.top, me.pgrp.top
        will_setsid = p.sid == p.id and born_in != p.id
        will_move = born_group != p.pgid or will_setsid
        if will_move:
            # those that must be born in p's present group first: p may have to leave it for others
            kids.sort(key=lambda c: self._birth_group(c) not in (None, born_group))
            for c in kids:
                if c.id in self.done or c.id in self.exile:
                    continue
                if c.sid == c.id:
                    if (will_setsid and self._birth_wanted(c) == born_in) or \
                            self._group_wanted(c) == born_group:
                        self.fork_or_defer(p.id, c)
                elif c.sid == born_in and (will_setsid or self._group_wanted(c) == born_group):
                    self.fork_or_defer(p.id, c)
        if will_setsid:
            self.emit(S.Setsid(p.id))
            self._group_made(p.id)
        if self._must_wait_for_group(p, kids):
            self.waiting.setdefault(p.pgid, []).append(p.id)
            return
        self.second_half(p)

    def _must_wait_for_group(self, p: Task, kids: list[Task]) -> bool:
        """p's group is led by a task not made yet, and a child of p must be born in it."""
        if p.sid == p.id or p.pgid not in self.group_ids or p.pgid == p.id:
            return False
        g = self.k.top_pid(p.pgid)
        if g is not None and g.pgrp:
            return False
        return any(c.id not in self.done and self._group_wanted(c) == p.pgid for c in kids)

    def _group_made(self, g: int) -> None:
        for w in self.waiting.pop(g, []):
            self.second_half(self.t[w])

    def _exiles(self) -> dict[int, int]:
        """Session leaders that must first be born below another task P, so that members of their
        session can be adopted by P, and are released to their real parent (an ancestor of P) when
        their helper parent exits. Needed when P has a child in a session P never was in, no child
        of P is in that session, and the live leader of that session hangs above P."""
        out: dict[int, int] = {}
        anc_cache: dict[int, set[int]] = {}

        def ancestors(x: int) -> set[int]:
            if x not in anc_cache:
                a: set[int] = set()
                y = self.t[x].ppid
                while y in self.t.tasks:
                    a.add(y)
                    y = self.t[y].ppid
                anc_cache[x] = a
            return anc_cache[x]

        for c in self.t:
            s = c.sid
            if s == c.id or s not in self.t.tasks or c.ppid not in self.t.tasks:
                continue
            par = self.t[c.ppid]
            lead = self.t[s]
            if par.sid == s or lead.ppid == par.id:
                continue
            if lead.ppid not in ancestors(par.id) or par.id in ancestors(lead.id):
                continue
            if self.ns_chain[lead.id] != self.ns_chain[par.id] or self.t.is_ns_init(lead.id):
                continue
            if par.sid == par.id and self._first_foreign(par) == s:
                continue  # par is born in s itself
            out.setdefault(lead.id, par.id)
        return out

    def _release_exiles(self) -> None:
        for helper, holder, real_parent in self.exiled:
            rp = self.proc(real_parent)
            is_init = rp.ns.reaper is rp and rp.unkillable
            if not is_init:
                self.emit(S.Subreaper(real_parent, True))
            self.emit(S.Exit(helper, 0))
            self.emit(S.Wait(holder, helper))
            if not is_init:
                self.emit(S.Subreaper(real_parent, False))
        self.exiled = []

    def second_half(self, p: Task) -> None:
        """p joins its group, then makes the children it can (others wait for agents)."""
        kids = [self.t[x] for x in self.children[p.id]]
        self.enter_group(p)
        for lead, holder in self.exile.items():
            if holder == p.id and lead not in self.done:
                hp = self.pool.take(self.ns_chain[p.id])
                self.emit(S.Fork(p.id, hp))
                self.helpers.append(Helper(hp, p.id, "exile", (
                    f"session leader {lead} is born below {p.id} so that {p.id} can adopt members of "
                    f"session {lead}, then goes to its parent {self.t[lead].ppid}")))
                self.exiled.append((hp[0], p.id, self.t[lead].ppid))
                self.fork(hp[0], self.t[lead])
        now_in = self.session_of(p.id)
        for c in kids:
            if c.id in self.done or c.id in self.exile:
                continue
            if self._birth_session(c) in (None, now_in):
                self.fork_or_defer(p.id, c)
            else:
                self.deferred.append(c.id)

    def _birth_session(self, c: Task) -> int | None:
        """The session c must be born in (None: any; a session leader that needs no other)."""
        if c.sid != c.id:
            return c.sid
        return self._birth_wanted(c)

    def _group_wanted(self, c: Task) -> int | None:
        """The group c must be born in: its own when it can never join it, or one that a child of
        its birth session must inherit from it (computed once per task)."""
        memo = self._gw
        if c.id in memo:
            return memo[c.id]
        memo[c.id] = None
        leader = c.sid == c.id
        want: int | None = c.pgid if not leader and self._must_inherit(c) else None
        if want is None:
            for x in self.children[c.id]:
                d = self.t[x]
                born = self._birth_session(d)
                if born is None or born == c.id:
                    continue  # born after c's setsid
                w = self._group_wanted(d)
                if w is not None and (leader or w != c.pgid):
                    want = w
                    break
        memo[c.id] = want
        return want

    def _must_inherit(self, c: Task) -> bool:
        """c cannot join its group later, by itself or by its parent: it must be born in it."""
        if c.pgid == 0 or c.pgid in self.t.external:
            return True
        lead = self.t.tasks.get(c.pgid)
        if lead is not None:
            gchain = self.ns_chain[lead.id]
        elif c.pgid in self.dead_home:  # a dead session leader, recreated below its home
            gchain = self.ns_chain[self.dead_home[c.pgid]]
        else:  # a dead leader is recreated in the shallowest namespace of its members
            gchain = self._dead_group_chain.get(c.pgid) or self._dead_group_chain.setdefault(
                c.pgid, min((self.ns_chain[m] for m in self.group_members[c.pgid]), key=len))

        def sees(chain: tuple[int, ...]) -> bool:  # a namespace names pids of itself and below
            return len(chain) <= len(gchain) and gchain[: len(chain)] == chain

        if sees(self.ns_chain[c.id]):
            return False
        par = self.t.tasks.get(c.ppid)
        return not (par is not None and par.sid == c.sid and sees(self.ns_chain[par.id]))

    def run_queue(self) -> None:
        while self.queue:
            self.after_birth(self.t[self.queue.popleft()])

    def resolve(self, cid: int) -> bool:
        """Create a task whose parent is not in its session. False when no way is open yet."""
        c = self.t[cid]
        p = c.ppid
        s = self._birth_session(c)
        if s is None or s == self.session_of(p):
            return self.fork(p, c)  # it waited for its group
        agent = self._agent(p, s, c.pgid if c.sid != c.id else None)
        if agent is None and self._is_tree_session(s) and s not in self.t.tasks and s not in self.dead_sessions_made \
                and self.dead_home.get(s, p) == p:
            agent = self._dead_session_leader(s, p, cid)
        if agent is not None:
            return self.fork(agent, c, clone_parent=True)
        m = self._member_below(p, s)
        if m is not None:
            batch = [c] + [self.t[d] for d in self.deferred if d != cid and d not in self.done
                           and self.t[d].ppid == p and self._birth_session(self.t[d]) == s]
            return self._adopt(m, p, batch)
        return False

    def _note(self, step: S.Step) -> None:
        """Index who is in which session under which parent, for agents and adoption."""
        if isinstance(step, S.Fork):
            if step.pid is None:
                return
            q = self.k.procs[step.pid[0]]
            if q.top not in self.ns_chain:  # a helper lives in its creator's namespace
                self.ns_chain[q.top] = self.ns_chain[step.parent]
        elif isinstance(step, S.Setsid):
            q = self.k.procs[step.task]
        else:
            return
        sid = q.session.top
        if q.parent is not None:
            self.by_parent.setdefault((q.parent.top, sid), []).append(q.top)
        self.by_session.setdefault(sid, []).append(q.top)

    def _current(self, pid: int, sid: int) -> Process | None:
        q = self.k.procs.get(pid)
        if q is None or q.state != "alive" or q.session.top != sid:
            return None
        return q

    def _agent(self, parent: int, sid: int, pgid: int | None = None) -> int | None:
        """A live child of `parent` in session `sid` that can fork with CLONE_PARENT; one already in
        group `pgid` when there is one (its child is born in that group)."""
        first = None
        for x in self.by_parent.get((parent, sid), ()):
            a = self._current(x, sid)
            if a is not None and a.parent is not None and a.parent.top == parent and not a.unkillable:
                if pgid is None or a.pgrp.top == pgid:
                    return x
                first = first or x
        return first

    def _dead_session_leader(self, s: int, parent: int, cid: int) -> int:
        chain = self.ns_chain[parent]
        pid = self.pool.take(chain, top=s)
        self.emit(S.Fork(parent, pid))
        self.emit(S.Setsid(s))
        self.dead_sessions_made.add(s)
        self.helpers.append(Helper(pid, parent, "session", (
            f"session {s} has no leader in the tree; task {cid} is born in it as a child of {parent}")))
        return s

    def _member_below(self, parent: int, sid: int) -> int | None:
        """A live member of session `sid` below `parent`, in parent's namespace (for adoption)."""
        pp = self.proc(parent)
        for x in self.by_session.get(sid, ()):
            q = self._current(x, sid)
            if q is None or q.ns is not pp.ns or q is pp:
                continue
            a = q.parent
            while a is not None and a is not pp and a.ns is pp.ns:
                a = a.parent
            if a is pp:
                return x
        return None

    def _adopt(self, member: int, parent: int, batch: list[Task]) -> bool:
        """One helper below `parent` makes every task of the batch, then exits: the kernel hands
        them all to `parent`, a subreaper for that moment (or the namespace init)."""
        pp = self.proc(parent)
        is_init = pp.ns.reaper is pp and pp.unkillable
        hp = self.pool.take(self.ns_chain[member])
        if not is_init:
            self.emit(S.Subreaper(parent, True))
        self.emit(S.Fork(member, hp))
        made = [c.id for c in batch if self.fork(hp[0], c)]
        self.emit(S.Exit(hp[0], 0))
        self.emit(S.Wait(member, hp[0]))
        if not is_init:
            self.emit(S.Subreaper(parent, False))
        names = ", ".join(str(x) for x in made[:5]) + (" ..." if len(made) > 5 else "")
        self.helpers.append(Helper(hp, member, "adopt", (
            f"{len(made)} task(s) of session {batch[0].sid if batch[0].sid != batch[0].id else 'birth'} "
            f"({names}) adopted by {parent}: helper {hp[0]} (child of {member}) made them and exited")))
        return bool(made)

    # ------------------------------------------------------------------------------------ groups

    def groups(self) -> None:
        t = self.t
        gids = {g: [t[m] for m in ms] for g, ms in self.group_members.items()}
        for g, members in gids.items():
            if g == 0 or g in t.external:
                continue
            if g in t.tasks or g in self.k.procs:  # its leader, or a helper that has its id already
                if g != self.proc(g).session.top and self.proc(g).pgrp.top != g:
                    self.emit(S.Setpgid(g, g, 0))
            else:
                creator = self._group_creator(members)
                self._dead_group_leader(creator, g, f"members {', '.join(str(m.id) for m in members[:3])}")
        leavers: list[Task] = []
        for x in t:
            if x.pgid == 0 or x.pgid in t.external:
                if self.proc(x.id).pgrp.top != x.pgid:
                    raise Unreachable(
                        f"task {x.id} must end in the restorer's group {x.pgid or '(invisible)'}, which no task "
                        f"can join (setpgid needs a group named in the caller's namespace), but it is in "
                        f"group {self.proc(x.id).pgrp.top}: it had to leave it to make a group or session "
                        f"other tasks need, or was born of a task outside it", (x.id,))
                continue
            if self.proc(x.id).pgrp.top == x.pgid:
                continue
            if x.id in gids and x.pgid != x.id:
                leavers.append(x)
                continue
            self.join(x)
        # a leader leaving its group goes after everyone who needs that group to exist
        pending = {x.id: x for x in leavers}
        while pending:
            progressed = False
            for x in list(pending.values()):
                # x may leave its group g when g keeps a final member that is already in it (or
                # nobody needs g), and may join its target group when that group has a member now.
                g_members = [m for m in gids.get(x.id, []) if m.id != x.id]
                if g_members and not any(self.proc(m.id).pgrp.top == x.id for m in g_members):
                    continue
                target = self.k.top_pid(x.pgid)
                if target is None or not target.pgrp:
                    continue
                self.join(x)
                del pending[x.id]
                progressed = True
            if not progressed:
                # leaders each left for another's group: a helper born in one of those groups keeps it
                # alive while its leader leaves, and dies at the end
                x = next(iter(pending.values()))
                if self.proc(x.id).pgrp is not self.proc(x.id).pid:
                    names = ", ".join(str(p) for p in pending)
                    raise Unreachable(f"group leaders {names} each left for another's group", tuple(pending))
                hp = self.pool.take(self.ns_chain[x.id])
                self.emit(S.Fork(x.id, hp))
                names = ", ".join(str(p) for p in pending)
                self.helpers.append(Helper(hp, x.id, "keeper", (
                    f"group {x.id} must outlive its leader's move to group {x.pgid} (leaders {names} swap groups)")))
                self.join(x)
                del pending[x.id]

    def join(self, x: Task) -> None:
        """x joins its final group: by itself when it can name the group from its namespace, else
        by its parent (a namespace init cannot see a group of the namespace above)."""
        me = self.proc(x.id)
        g = self.k.top_pid(x.pgid)
        caller = x.id
        if (g is None or g.nr_in(me.ns) is None) and me.parent is not None and me.parent.session is me.session:
            caller = me.parent.top
        self.emit(S.Setpgid(caller, x.id, x.pgid))

    def _group_creator(self, members: list[Task]) -> int:
        """A live task of the group's session that can see every member (shallowest namespace)."""
        sid = members[0].sid
        best = min(members, key=lambda m: len(m.pid))
        cands = itertools.chain((best.id,), (x.id for x in self.t if x.sid == sid and len(x.pid) <= len(best.pid)))
        fallback = None
        for c in cands:
            pr = self.k.procs.get(c)
            if pr is not None and pr.state == "alive":
                if not self._traps_init(c, members[0].pgid):
                    return c
                fallback = fallback or c
        if fallback is not None:
            return fallback
        raise Unreachable(f"group {members[0].pgid}: no live task of session {sid} to recreate its dead leader",
                          tuple(m.id for m in members))

    # ------------------------------------------------------------------------------------ deaths

    def deaths(self) -> None:
        for h in self.helpers:
            if h.role in ("session", "group", "keeper"):
                self.emit(S.Exit(h.pid[0], 0))
                parent = self.proc(h.pid[0]).parent
                assert parent is not None
                self.emit(S.Wait(parent.top, h.pid[0]))
        for x in self.t:
            if x.state == ZOMBIE:
                if x.child_subreaper:
                    self.emit(S.Subreaper(x.id, True))
                if x.comm and self.proc(x.id).comm != x.comm:
                    self.emit(S.Comm(x.id, x.comm))
                self.emit(S.Exit(x.id, x.exit_status or 0))

    def finish(self) -> None:
        for x in self.t:
            if x.state == ZOMBIE:
                continue
            if x.child_subreaper and not self.proc(x.id).is_subreaper:
                self.emit(S.Subreaper(x.id, True))
        for x in self.t:
            if x.state != ZOMBIE and x.comm and self.proc(x.id).comm != x.comm:
                self.emit(S.Comm(x.id, x.comm))
        for x in self.t:
            if x.leader_exited:
                self.emit(S.ExitLeaderThread(x.id))
        for x in self.t:
            if x.state == STOPPED:
                self.emit(S.Stop(x.id))

    # -------------------------------------------------------------------------------------- main

    def build(self) -> BuildResult:
        self.queue: deque[int] = deque([self.t.root.id])
        root = self.t.root
        if root.comm:
            self.emit(S.Comm(root.id, root.comm))
        self.run_queue()
        self._settle()
        missing = [x for x in self.t.tasks if x not in self.done]
        if missing:
            # leaders meant to be born below another task that never got to make them: their own
            # parent makes them after all
            for x in missing:
                if x in self.exile:
                    del self.exile[x]
                    self.deferred.append(x)
            self._settle()
            missing = [x for x in self.t.tasks if x not in self.done]
            if missing:
                raise _explain(self, missing[0])
        self._release_exiles()
        self.groups()
        self.deaths()
        self.finish()
        return BuildResult(self.steps, self.helpers, self.k)


    def _settle(self) -> None:
        """Resolve deferred tasks (and groups waited for) until nothing is left or nothing moves."""
        while self.deferred or self.waiting:
            if not self.deferred:
                # groups that were never made before their members' children needed them
                for g in list(self.waiting):
                    self._group_made(g)
                self.run_queue()
                continue
            progressed = False
            rest: list[int] = []
            for cid in self.deferred:
                if cid in self.done:
                    continue
                if self.t[cid].ppid in self.done and self.resolve(cid):
                    progressed = True
                    self.run_queue()
                else:
                    rest.append(cid)
            self.deferred = rest
            if not progressed and rest:
                if self.waiting:
                    for g in list(self.waiting):
                        self._group_made(g)
                    self.run_queue()
                    continue
                raise _explain(self, rest[0])


def trapped_inits(k: Kernel) -> list[str]:
    """Live namespace inits that hold a pid of their own namespace (other than their own) as group or
    session id. Such a state is reachable, but the init can never die: zap_pid_ns_processes waits for
    every pid of the namespace, and the init itself holds one. A restorer must refuse to build it."""
    out = []
    for p in k.procs.values():
        if p.unkillable and p.state != "zombie" and p.ns.reaper is p:
            for kind, ref in (("group", p.pgrp), ("session", p.session)):
                if ref is not p.pid and ref.nr_in(p.ns) is not None:
                    out.append(f"init {p.top} is in {kind} {ref.top}, a pid of its own namespace")
    return out


def _explain(b: Builder, cid: int) -> Unreachable:
    c = b.t[cid]
    p = b.t[c.ppid]
    s = c.sid
    if s in b.t.tasks:
        lead = f"leader {s}"
    else:
        lead = "the restorer (external)" if not b._is_tree_session(s) else f"dead leader {s}"
    return Unreachable(
        f"task {cid} is in session {s} but its parent {p.id} is in session {p.sid}: {p.id} was never in "
        f"session {s}, no child of {p.id} is ever in session {s} to fork {cid} with CLONE_PARENT, and no "
        f"task of session {s} ({lead}) can ever be below {p.id} to be adopted by it",
        (cid, p.id),
    )


def _parents_first(tree: Tree) -> list[int]:
    out = [tree.root.id]
    ch = tree.children()
    i = 0
    while i < len(out):
        out.extend(ch[out[i]])
        i += 1
    return out


def _ns_chains(tree: Tree) -> dict[int, tuple[int, ...]]:
    """For each task, the inits of the namespaces at each of its levels (top first)."""
    out: dict[int, tuple[int, ...]] = {}
    root = tree.root
    ch = tree.children()
    top = root.id if tree.is_ns_init(root.id) else 0
    out[root.id] = (top,)
    stack = [root.id]
    while stack:
        x = stack.pop()
        for c in ch[x]:
            out[c] = out[x] + (c,) if tree.is_ns_init(c) else out[x]
            stack.append(c)
    return out


def build(tree: Tree, base_level: int = 1, avoid: frozenset[int] = frozenset()) -> BuildResult:
    return Builder(tree, base_level, avoid).build()
