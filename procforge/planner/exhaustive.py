"""Brute force: every state reachable by system calls on a small pid range, using the model itself.

The planner claims to be complete. This module checks the claim where the space is small enough to
walk entirely: starting from a fresh namespace (init pid 1, in the restorer's group and session), it
applies every step the language offers (fork with each free pid, with and without CLONE_PARENT,
setsid, setpgid with every target and group, subreaper on/off, exit, wait) to every state reached, and
collects the trees whose tasks and ids all lie in 1..`pids`, with helpers free to use a few more pids
and gone at the end.

Stopped tasks, thread details and final subreaper flags are left out on purpose: each is
orthogonal (SIGSTOP and PR_SET_CHILD_SUBREAPER can be applied last to any live task; an exit status
can be any value), so they multiply the space without changing which shapes are reachable.

Subreapers matter only at the moment a process exits: its children go to the nearest live ancestor
that is a subreaper then (or to init). So instead of toggling flags as separate moves (which
multiplies the states by every flag combination), an exit is tried once plainly and once for each live
ancestor R as `subreaper R on; exit X; subreaper R off`, with every flag off between moves. Setting R
marks all of R's descendants with `has_child_subreaper`, so the stale hint cannot stop R's walk and
needs no place in the state: every adoption a history with free toggling can make, one of these
macro-moves makes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from procforge import steps as S
from procforge.kernel.machine import Kernel
from procforge.kernel.state import ZOMBIE, Pid, Process
from procforge.tree import Task, Tree

# one process: (pid, ppid, pgid, sid, zombie)
Row = tuple[int, int, int, int, bool]
State = tuple[Row, ...]


def encode(k: Kernel) -> State:
    return tuple(sorted(
        (p.top, p.parent.top if p.parent else 0, p.pgrp.top, p.session.top, p.state == ZOMBIE)
        for p in k.procs.values()
    ))


def decode(state: State) -> Kernel:
    k = Kernel()
    ns = k.top_ns
    ids: dict[int, Pid] = {0: k.env_pgrp}
    procs: dict[int, Process] = {}
    for row in state:
        pid = Pid((row[0],), ns)
        ns.pids[row[0]] = pid
        ids[row[0]] = pid
        p = Process(pid, ns)
        pid.task = p
        procs[row[0]] = p
    for row in state:
        for nr in (row[2], row[3]):
            if nr not in ids:
                pid = Pid((nr,), ns)
                ns.pids[nr] = pid
                ids[nr] = pid
    for nr, pid, sid, zomb, par in ((r[0], r[2], r[3], r[4], r[1]) for r in state):
        p = procs[nr]
        p.parent = procs.get(par)
        if p.parent is not None:
            p.parent.children[nr] = p
        k.attach_pgrp(p, ids[pid] if pid else k.env_pgrp)
        k.attach_session(p, ids[sid] if sid else k.env_session)
        p.session_leader = sid == nr
        if zomb:
            p.state = ZOMBIE
            p.leader_alive = False
        k.procs[nr] = p
    init = procs.get(1)
    if init is not None and init.parent is None:
        init.unkillable = True
        ns.reaper = init
    return k


def moves(k: Kernel, max_pid: int, max_procs: int) -> Iterator[list[S.Step]]:
    live = [p for p in k.procs.values() if p.state != ZOMBIE]
    # Which free number a fork takes does not matter (the rules never compare numbers), so forks
    # take the lowest free one: the search is complete up to a renaming of pids.
    free = [n for n in range(2, max_pid + 1) if n not in k.top_ns.pids][:1]
    if len(k.procs) < max_procs:
        for p in live:
            for n in free:
                yield [S.Fork(p.top, (n,))]
                if not p.unkillable:
                    yield [S.Fork(p.top, (n,), clone_parent=True)]
    groups = sorted({q.pgrp.top for q in k.procs.values()})
    for p in live:
        yield [S.Setsid(p.top)]
        targets = [p] + list(p.children.values())
        for t in targets:
            for g in groups:
                if g:
                    yield [S.Setpgid(p.top, t.top, g)]
            yield [S.Setpgid(p.top, t.top, 0)]
        yield [S.Exit(p.top, 0)]
        if p.children:
            r = p.parent
            while r is not None and r.ns is p.ns:
                if not r.unkillable:
                    yield [S.Subreaper(r.top, True), S.Exit(p.top, 0), S.Subreaper(r.top, False)]
                r = r.parent
        for c in p.children.values():
            if c.state == ZOMBIE:
                yield [S.Wait(p.top, c.top)]


def canonical_state(state: State) -> State:
    """The least relabeling of a state's numbers other than 0 and 1: states that differ only by pid
    names have the same futures up to that renaming, so the search keeps one of them."""
    nums = sorted({x for r in state for x in r[:4]} - {0, 1})
    best: State | None = None
    for perm in itertools.permutations(range(2, 2 + len(nums))):
        m = dict(zip(nums, perm, strict=True))
        m[0], m[1] = 0, 1
        cand = tuple(sorted((m[a], m[b], m[c], m[d], z) for a, b, c, d, z in state))
        if best is None or cand < best:
            best = cand
    assert best is not None
    return best


def reachable_states(max_pid: int = 7, max_procs: int = 6) -> set[State]:
    start = encode(Kernel.fresh())
    seen = {start}
    frontier = [start]
    while frontier:
        nxt = []
        for st in frontier:
            k0 = decode(st)
            for mv in moves(k0, max_pid, max_procs):
                k = decode(st)
                if all(k.apply(m) is None for m in mv):
                    e = canonical_state(encode(k))
                    if e not in seen:
                        seen.add(e)
                        nxt.append(e)
        frontier = nxt
    return seen


Shape = tuple[tuple[int, int, int, int, bool], ...]


def canonical(shape: Shape) -> Shape:
    """Trees are compared up to a renaming of pids too (a shape and a state have the same rows)."""
    return canonical_state(shape)


def reachable_shapes(tree_pids: int = 5, max_tasks: int = 4, extra_pids: int = 2) -> set[Shape]:
    """Canonical shapes of every reachable tree with at most max_tasks tasks using at most tree_pids
    numbers (tasks and ids), found with tree_pids + extra_pids numbers in use at any time."""
    states = reachable_states(tree_pids + extra_pids, max_tasks + extra_pids)
    out: set[Shape] = set()
    for st in states:
        if len(st) > max_tasks:
            continue
        shape = tuple((r[0], r[1], r[2], r[3], r[4]) for r in st)
        nums = {x for row in shape for x in row[:4]} - {0}
        if len(nums) <= tree_pids:
            out.add(canonical(shape))
    return out


def to_tree(shape: tuple) -> Tree:
    tasks = {}
    for nr, ppid, pgid, sid, zomb in shape:
        tasks[nr] = Task(pid=(nr,), ppid=ppid, pgid=pgid, sid=sid, state="zombie" if zomb else "alive",
                         exit_status=0 if zomb else None, child_subreaper=None)
    return Tree(tasks=tasks, namespaces=(1,) if 1 in tasks else ())


def candidate_shapes(tree_pids: int = 5, max_tasks: int = 4) -> Iterator[tuple]:
    """Every tree of up to max_tasks tasks on pids 1..tree_pids rooted at init 1, with every parent,
    group, session and alive/zombie state that passes the tree invariants (procforge.invariants)."""
    from procforge.errors import TreeError
    from procforge.invariants import check_tree

    ids = range(0, tree_pids + 1)
    for n in range(0, max_tasks):
        for chosen in (tuple(range(2, 2 + n)),):  # task numbers up to renaming
            nodes = (1, *chosen)
            for parents in itertools.product(nodes, repeat=n):
                if not _is_tree(chosen, parents):
                    continue
                for sids in itertools.product(ids, repeat=n + 1):
                    if not _sessions_ok(nodes, sids):
                        continue
                    for pgids in itertools.product(ids, repeat=n + 1):
                        if not _groups_ok(nodes, sids, pgids):
                            continue
                        for zomb in itertools.product((False, True), repeat=n + 1):
                            shape = tuple(sorted(
                                (nodes[i], 0 if i == 0 else parents[i - 1], pgids[i], sids[i], zomb[i])
                                for i in range(n + 1)))
                            try:
                                check_tree(to_tree(shape))
                            except TreeError:
                                continue
                            if shape == canonical(shape):
                                yield shape


def _is_tree(chosen: tuple[int, ...], parents: tuple[int, ...]) -> bool:
    par = dict(zip(chosen, parents, strict=True))
    for c in chosen:
        seen = set()
        x = c
        while x != 1:
            if x in seen or x == par.get(x):
                return False
            seen.add(x)
            x = par[x]
    return True


def _sessions_ok(nodes: tuple[int, ...], sids: tuple[int, ...]) -> bool:
    where = dict(zip(nodes, sids, strict=True))
    return all(not (s in where and where[s] != s) for s in sids)


def _groups_ok(nodes: tuple[int, ...], sids: tuple[int, ...], pgids: tuple[int, ...]) -> bool:
    gs: dict[int, int] = {}
    for s, g in zip(sids, pgids, strict=True):
        if (g == 0) != (s == 0) and g == 0:
            return False
        if gs.setdefault(g, s) != s:
            return False
    return True
