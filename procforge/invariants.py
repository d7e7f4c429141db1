"""Invariants that every process tree a Linux kernel can hold satisfies.

These are facts, not reachability: a tree that breaks one cannot exist at all (a group in two
sessions, a session leader outside its own group, a tid that is also a pid). Whether a tree that
passes them can be *built* by system calls is the planner's question (procforge.planner.reach).
Each check raises TreeError naming the task and field.
"""

from __future__ import annotations

from procforge.errors import TreeError
from procforge.tree import ZOMBIE, Tree


def _fail(source: str | None, pid: int | None, field: str, msg: str) -> None:
    who = f"task {pid}: field {field}: " if pid is not None else f"field {field}: "
    raise TreeError(who + msg, source=source)


def valid_wait_status(status: int) -> bool:
    """A raw wait status a zombie can hold: exit code << 8, or a signal number (| 0x80 for core)."""
    sig = status & 0x7F
    if sig == 0:
        return status & 0xFF == 0 and status >> 8 <= 255
    return status >> 8 == 0 and 1 <= sig <= 64 and sig not in (0x7F,)


def check_tree(tree: Tree, source: str | None = None) -> None:  # noqa: C901 - one pass, many rules
    tasks = tree.tasks
    # pid numbers, per level and namespace: the tuple of numbers above a level names the namespace
    # only up to its init, so uniqueness is checked on (init chain, level, number).
    tids: dict[int, int] = {}
    for t in tasks.values():
        for th in t.threads:
            if len(th) != len(t.pid):
                _fail(source, t.id, "threads", f"thread {th[0]} has {len(th)} levels, the task has {len(t.pid)}")
            if th[0] in tasks:
                _fail(source, t.id, "threads", f"thread id {th[0]} is also a task's pid")
            if th[0] in tids:
                _fail(source, t.id, "threads", f"thread id {th[0]} also belongs to task {tids[th[0]]}")
            tids[th[0]] = t.id
    # namespaces
    inits = set(tree.namespaces)
    if len(inits) != len(tree.namespaces):
        _fail(source, None, "namespaces", "an init is listed twice")
    for p in tree.namespaces:
        if p not in tasks:
            _fail(source, None, "namespaces", f"init {p} is not a task of the tree")
        if tasks[p].pid[-1] != 1:
            _fail(source, p, "pid", f"namespace init has pid {tasks[p].pid[-1]} in its own namespace, not 1")
    for x in tree.external:
        if x in tasks or x in tids:
            _fail(source, None, "external", f"id {x} is a task or thread of the tree, not external")
    roots = [t for t in tasks.values() if t.ppid not in tasks]
    if len(roots) != 1:
        _fail(source, roots[1].id if len(roots) > 1 else None, "ppid",
              f"the tree must have one root; tasks {', '.join(str(r.id) for r in roots[:5])} have parents outside it"
              if roots else "no root: the parent links form a cycle")
    root = roots[0]
    if root.ppid != 0 and root.ppid not in tree.external:
        _fail(source, root.id, "ppid", f"the root's parent {root.ppid} is neither 0 nor an external id")
    if len(root.pid) != 1:
        _fail(source, root.id, "pid", "the root must live in the tree's top namespace (one pid level)")
    if root.pid[0] == 1 and root.id not in inits:
        _fail(source, root.id, "pid", "a root with pid 1 must be listed as a namespace init")
    # namespace membership: each task's namespace is its own (init) or its parent's
    ns_of: dict[int, int] = {}  # task -> init of its namespace (0 for the top when it has no init)
    order = _topological(tree, source)
    for pid in order:
        t = tasks[pid]
        if pid in inits:
            ns_of[pid] = pid
            want = 1 if pid == root.id else len(tasks[t.ppid].pid) + 1
        elif t.ppid in tasks:
            ns_of[pid] = ns_of[t.ppid]
            want = len(tasks[t.ppid].pid)
        else:
            ns_of[pid] = 0
            want = 1
        if len(t.pid) != want:
            _fail(source, pid, "pid", f"has {len(t.pid)} levels; its namespace has {want}")
        if pid not in inits and t.pid[-1] == 1 and len(t.pid) > 1:
            _fail(source, pid, "pid", "pid 1 in its namespace but not listed as that namespace's init")
    seen: dict[tuple[int, int, int], int] = {}
    for t in tasks.values():
        chain = _ns_chain(tree, ns_of, t.id, root.id)
        for nrs in (t.pid, *t.threads):
            for lvl, nr in enumerate(nrs):
                key = (chain[lvl], lvl, nr)
                if key in seen and seen[key] != t.id:
                    _fail(source, t.id, "pid", f"number {nr} at level {lvl} is also used by task {seen[key]}")
                seen[key] = t.id
    # states, threads, parents
    for t in tasks.values():
        if t.state == ZOMBIE:
            if t.exit_status is None:
                _fail(source, t.id, "exit_status", "a zombie needs its wait status")
            if t.threads or t.leader_exited:
                _fail(source, t.id, "threads", "a zombie has no other threads")
        elif t.exit_status is not None:
            _fail(source, t.id, "exit_status", f"only a zombie has an exit status (state is {t.state})")
        if t.exit_status is not None and not valid_wait_status(t.exit_status):
            _fail(source, t.id, "exit_status", f"{t.exit_status} is not a wait status")
        if t.leader_exited and not t.threads:
            _fail(source, t.id, "leader_exited", "the leader can only exit first when other threads live")
        if t.ppid in tasks and tasks[t.ppid].state == ZOMBIE:
            _fail(source, t.id, "ppid", f"parent {t.ppid} is a zombie; a zombie has no children")
        if t.state == ZOMBIE and t.id in inits and any(c for c in tree.children()[t.id]):
            _fail(source, t.id, "state", "a dead namespace init leaves no task in its namespace")
    # groups and sessions
    group_sid: dict[int, tuple[int, int]] = {}
    for t in tasks.values():
        if t.pgid == 0 and t.sid != 0:
            _fail(source, t.id, "pgid", "an invisible (0) group in a visible session")
        if t.pgid in tids:
            _fail(source, t.id, "pgid", f"{t.pgid} is a thread id; groups are named by a process's pid")
        if t.sid in tids:
            _fail(source, t.id, "sid", f"{t.sid} is a thread id; sessions are named by a process's pid")
        if t.pgid and t.pgid in group_sid and group_sid[t.pgid][0] != t.sid:
            other = group_sid[t.pgid][1]
            _fail(source, t.id, "sid",
                  f"group {t.pgid} spans sessions {group_sid[t.pgid][0]} (task {other}) and {t.sid}")
        group_sid.setdefault(t.pgid, (t.sid, t.id))
    for t in tasks.values():
        if t.sid and t.sid in tasks:
            lead = tasks[t.sid]
            if lead.sid != t.sid:
                _fail(source, lead.id, "sid",
                      f"task {lead.id} leads session {t.sid} (task {t.id} is in it) so must be in it")
        if t.sid and t.sid in group_sid and group_sid[t.sid][0] != t.sid:
            # group id == a session id: the group was made by that session's setsid
            g = group_sid[t.sid]
            _fail(source, g[1], "sid", f"group {t.sid} is named after session {t.sid} but lies in session {g[0]}")
        if t.pgid and t.pgid in tasks:
            lead = tasks[t.pgid]
            if lead.sid != t.sid:
                _fail(source, lead.id, "sid", f"task {lead.id} made group {t.pgid} (task {t.id} is in it) "
                                              f"in session {t.sid}, but is in session {lead.sid}")
    for t in tasks.values():
        if t.id == t.sid and t.pgid != t.id:
            _fail(source, t.id, "pgid", f"a session leader stays in its own group {t.id}, not {t.pgid}")


def _topological(tree: Tree, source: str | None) -> list[int]:
    """Tasks parents-first; raises on a parent cycle."""
    out: list[int] = []
    ch = tree.children()
    stack = [r.id for r in tree.tasks.values() if r.ppid not in tree.tasks]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(reversed(ch[p]))
    if len(out) != len(tree.tasks):
        missing = next(p for p in tree.tasks if p not in set(out))
        _fail(source, missing, "ppid", "parent links form a cycle")
    return out


def _ns_chain(tree: Tree, ns_of: dict[int, int], pid: int, root: int) -> list[int]:
    """Inits of the namespaces at each level of a task, top first (0 for a top level without init)."""
    chain: list[int] = []
    init = ns_of[pid]
    while True:
        chain.append(init)
        if init == 0 or init == root or tree.tasks[init].ppid not in tree.tasks:
            break
        init = ns_of[tree.tasks[init].ppid]
    chain.reverse()
    if chain and len(chain) < len(tree.tasks[pid].pid):
        chain = [0] * (len(tree.tasks[pid].pid) - len(chain)) + chain
    return chain
