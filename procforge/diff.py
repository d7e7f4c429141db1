"""Comparing two trees: exactly, task by task, or up to a renaming of pids (`shape`).

Pure functions over procforge.tree values. Two wildcards, because some sources cannot know a
value: a null child_subreaper (a capture without the probe) and an empty comm match anything; a
zombie's subreaper flag is never compared (it has no effect, and neither /proc nor CRIU keeps it).

Shape equality is an isomorphism: a bijection between the tasks (and between the ids that are no
task: dead and external ones) that preserves parents, groups, sessions, namespace inits and every
per-task attribute, while the numbers themselves may differ. It is found by colour refinement
(Weisfeiler-Lehman on the graph of parent/group/session links, run jointly on both trees so that
colours mean the same in each), then individualisation with backtracking where symmetric tasks
remain, and is always checked by applying it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from procforge.tree import ZOMBIE, Task, Tree

FIELDS = ("pid", "ppid", "pgid", "sid", "state", "exit_status", "threads", "leader_exited",
          "child_subreaper", "comm")


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference: a task's field (task None for tree-level fields), A's and B's values."""

    task: int | None
    field: str
    a: Any
    b: Any

    def __str__(self) -> str:
        who = f"task {self.task}: " if self.task is not None else ""
        if self.field == "presence":
            return f"{who}only in {'A' if self.a else 'B'}"
        f = _fmt_threads if self.field == "threads" else _fmt
        return f"{who}{self.field}: {f(self.a)} (A) vs {f(self.b)} (B)"

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "field": self.field, "a": _jsonable(self.a),
                "b": _jsonable(self.b)}


def _fmt_threads(v: tuple[tuple[int, ...], ...]) -> str:
    return "[" + ", ".join("/".join(map(str, t)) for t in sorted(v)) + "]"


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "/".join(map(str, v))
    if isinstance(v, frozenset):
        return "{" + ", ".join(map(str, sorted(v))) + "}"
    return "null" if v is None else str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, frozenset):
        return sorted(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def _field_equal(name: str, a: Task, b: Task) -> bool:
    x, y = getattr(a, name), getattr(b, name)
    if name == "threads":
        return sorted(x) == sorted(y)
    if name == "child_subreaper":
        return x is None or y is None or x == y or a.state == ZOMBIE or b.state == ZOMBIE
    if name == "comm":
        return not x or not y or x == y
    return bool(x == y)


# ----------------------------------------------------------------------------------------- exact


def diff(a: Tree, b: Tree) -> list[Difference]:
    """Every difference between A and B, task by task (A's order, then tasks only in B)."""
    out: list[Difference] = []
    if set(a.namespaces) != set(b.namespaces):
        out.append(Difference(None, "namespaces", frozenset(a.namespaces),
                              frozenset(b.namespaces)))
    if a.external != b.external:
        out.append(Difference(None, "external", a.external, b.external))
    for pid, ta in a.tasks.items():
        tb = b.tasks.get(pid)
        if tb is None:
            out.append(Difference(pid, "presence", True, False))
            continue
        out.extend(Difference(pid, f, getattr(ta, f), getattr(tb, f))
                   for f in FIELDS if not _field_equal(f, ta, tb))
    out.extend(Difference(pid, "presence", False, True) for pid in b.tasks if pid not in a.tasks)
    return out


# ----------------------------------------------------------------------------------------- shape


def _kind(tree: Tree, x: int) -> str:
    """What an id a task points to is: none (0, invisible), a task, external, or dead."""
    if x == 0:
        return "none"
    if x in tree.tasks:
        return "task"
    return "external" if x in tree.external else "dead"


def _signature(tree: Tree, t: Task) -> tuple[Any, ...]:
    """Everything about a task that survives renaming, with the relations reduced to their kind."""
    return ("task", len(t.pid), t.id in tree.namespaces, t.state, t.exit_status, len(t.threads),
            t.leader_exited, None if t.state == ZOMBIE else t.child_subreaper, t.comm,
            t.pgid == t.id, t.sid == t.id, _kind(tree, t.ppid), _kind(tree, t.pgid),
            _kind(tree, t.sid))


def _signature_text(sig: tuple[Any, ...]) -> str:
    if sig[0] != "task":
        return f"a {sig[0]} id"
    (_, levels, init, state, status, nthreads, lexit, sub, comm, gl, sl, kp, kg, ks) = sig
    bits = [state, f"{levels} level{'s' * (levels > 1)}"]
    bits += ["namespace init"] * init + [f"status {status}"] * (status is not None)
    bits += [f"{nthreads} threads"] * (nthreads > 0) + ["leader exited"] * lexit
    bits += ["subreaper"] * bool(sub) + [f"comm {comm!r}"] * bool(comm)
    bits += ["group leader"] * gl + ["session leader"] * sl
    bits += [f"parent {kp}", f"group {kg}", f"session {ks}"]
    return "a task (" + ", ".join(bits) + ")"


class _Graph:
    """Nodes: tasks and the non-task ids they point to; typed edges to parent, group, session."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.nodes: list[int] = list(tree.tasks)
        ids = {x for t in tree for x in (t.ppid, t.pgid, t.sid)} - set(tree.tasks) - {0}
        self.nodes += sorted(ids)
        self.sig: dict[int, tuple[Any, ...]] = {
            x: _signature(tree, t) for x, t in tree.tasks.items()}
        for x in ids:
            self.sig[x] = (_kind(tree, x),)
        self.out: dict[int, list[tuple[str, int]]] = {x: [] for x in self.nodes}
        self.inc: dict[int, list[tuple[str, int]]] = {x: [] for x in self.nodes}
        for t in tree:
            for label, y in (("parent", t.ppid), ("group", t.pgid), ("session", t.sid)):
                if y and y != t.id:
                    self.out[t.id].append((label, y))
                    self.inc[y].append((label, t.id))


def _tree_colours(g: _Graph, table: dict[tuple[Any, ...], int]) -> dict[int, int]:
    """Initial colours that already hold the whole parent structure (AHU): a task's colour names
    its subtree (bottom-up) and its ancestry (top-down), so that refinement only has the group
    and session links left to spread, instead of one round per level of a deep tree."""
    tree = g.tree
    order = [tree.root.id]
    ch = tree.children()
    for x in order:
        order.extend(ch[x])
    down: dict[int, int] = {}
    for x in reversed(order):
        key = ("down", g.sig[x], tuple(sorted(down[c] for c in ch[x])))
        down[x] = table.setdefault(key, len(table))
    out: dict[int, int] = {}
    for x in order:
        t = tree.tasks[x]
        key = ("up", out.get(t.ppid, -1), down[x])
        out[x] = table.setdefault(key, len(table))
    for x in g.nodes:
        if x not in out:
            out[x] = table.setdefault(g.sig[x], len(table))
    return out


def _pairing(ga: _Graph, gb: _Graph, ca: dict[int, int], cb: dict[int, int]
             ) -> dict[int, int] | None:
    """A candidate bijection: tasks paired down the tree (root first) by colour, each child with
    the first alike child of its parent's image whose links agree with the pairs made so far;
    the non-task ids follow the tasks that point to them."""
    ta, tb = ga.tree, gb.tree
    task_a = ta.tasks
    outb = {y: dict(gb.out[y]) for y in gb.nodes}
    m = {ta.root.id: tb.root.id}
    image = {tb.root.id}

    def fits(c: int, y: int) -> bool:
        for lab, t in ga.out[c]:
            yt = outb[y].get(lab)
            if t in m:
                if m[t] != yt:
                    return False
            elif yt in image or yt is None:
                return False
        return all(s not in m or outb[m[s]].get(lab) == y for lab, s in ga.inc[c])

    cha, chb = ta.children(), tb.children()
    todo = [ta.root.id]
    for x in todo:
        pools: dict[int, list[int]] = {}
        for c in chb[m[x]]:
            pools.setdefault(cb[c], []).append(c)
        for c in cha[x]:
            pool = pools.get(ca[c])
            if not pool:
                return None
            y = next((y for y in pool if fits(c, y)), pool[0])
            pool.remove(y)
            m[c] = y
            image.add(y)
            for lab, t in ga.out[c]:
                if t not in task_a and t not in m and outb[y].get(lab) is not None:
                    m[t] = outb[y][lab]
                    image.add(m[t])
            todo.append(c)
    return m if len(m) == len(ga.nodes) else None


def _refine_step(g: _Graph, c: dict[int, int], table: dict[tuple[Any, ...], int]
                 ) -> dict[int, int]:
    new = {}
    for x in g.nodes:
        key = (c[x], tuple(sorted((lab, c[y]) for lab, y in g.out[x])),
               tuple(sorted((lab, c[y]) for lab, y in g.inc[x])))
        new[x] = table.setdefault(key, len(table))
    return new


def _refine(ga: _Graph, gb: _Graph, ca: dict[int, int], cb: dict[int, int]
            ) -> tuple[dict[int, int], dict[int, int]]:
    """Colour refinement run on both graphs with one shared table, until stable."""
    while True:
        table: dict[tuple[Any, ...], int] = {}
        na, nb = _refine_step(ga, ca, table), _refine_step(gb, cb, table)
        if len(table) == len(set(ca.values()) | set(cb.values())):
            return na, nb
        ca, cb = na, nb


def _search(ga: _Graph, gb: _Graph, ca: dict[int, int], cb: dict[int, int], budget: list[int],
            depth: int = 0) -> dict[int, int] | None:
    """A colour-preserving bijection A -> B that is an isomorphism, or None. Tasks are first
    paired down the tree by colour (right whenever alike siblings are interchangeable, the usual
    case); only if that fails is one pair individualised and the search recursed."""
    ca, cb = _refine(ga, gb, ca, cb)
    if Counter(ca.values()) != Counter(cb.values()):
        return None
    xs: dict[int, list[int]] = {}
    ys: dict[int, list[int]] = {}
    for x in ga.nodes:
        xs.setdefault(ca[x], []).append(x)
    for y in gb.nodes:
        ys.setdefault(cb[y], []).append(y)
    m = _pairing(ga, gb, ca, cb)
    if m is not None and _is_isomorphism(ga, gb, m):
        return m
    big = [c for c in xs if len(xs[c]) > 1]
    if not big or depth >= 64:
        return None
    colour = min(big, key=lambda c: (len(xs[c]), c))
    x = xs[colour][0]
    fresh = max(max(ca.values()), max(cb.values())) + 1
    for y in ys[colour]:
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        found = _search(ga, gb, {**ca, x: fresh}, {**cb, y: fresh}, budget, depth + 1)
        if found is not None:
            return found
    return None


def _is_isomorphism(ga: _Graph, gb: _Graph, m: dict[int, int]) -> bool:
    if sorted(m.values()) != sorted(gb.nodes):
        return False
    for x in ga.nodes:
        if ga.sig[x] != gb.sig[m[x]]:
            return False
        if sorted((lab, m[y]) for lab, y in ga.out[x]) != sorted(gb.out[m[x]]):
            return False
    return True


@dataclass(frozen=True, slots=True)
class ShapeResult:
    """Whether A and B have the same shape; the renaming A -> B when they do, else reasons."""

    equal: bool
    mapping: dict[int, int]
    reasons: tuple[str, ...]


def shape_diff(a: Tree, b: Tree, budget: int = 10_000) -> ShapeResult:
    """Compare A and B up to a renaming of pids."""
    ga, gb = _Graph(a), _Graph(b)
    reasons = list(_kind_counts(ga, gb))
    if not reasons:
        table: dict[tuple[Any, ...], int] = {}
        ca, cb = _tree_colours(ga, table), _tree_colours(gb, table)
        m = _search(ga, gb, ca, cb, [budget])
        if m is not None:
            return ShapeResult(True, {x: y for x, y in m.items() if x in a.tasks}, ())
        reasons.append("the same kinds of tasks, arranged differently (parents, groups or "
                       "sessions link different kinds of tasks)")
    return ShapeResult(False, {}, tuple(reasons))


def _kind_counts(ga: _Graph, gb: _Graph) -> Iterator[str]:
    sa, sb = Counter(ga.sig.values()), Counter(gb.sig.values())
    for sig in sorted(set(sa) | set(sb), key=repr):
        if sa[sig] != sb[sig]:
            yield f"{sa[sig]} (A) vs {sb[sig]} (B): {_signature_text(sig)}"
