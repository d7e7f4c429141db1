"""Compare a model state with the target tree: the plan is right only when nothing differs."""

from __future__ import annotations

from procforge.tree import Task, Tree

_FIELDS = ("pid", "ppid", "pgid", "sid", "state", "exit_status", "threads", "leader_exited")


def differences(target: Tree, got: Tree, limit: int = 50) -> list[str]:
    """Lines naming each task and field that differ; comm and an unknown subreaper flag in the
    target are not compared (they are informational or could not be read)."""
    out: list[str] = []
    for pid, t in target.tasks.items():
        g = got.tasks.get(pid)
        if g is None:
            out.append(f"task {pid}: missing")
            continue
        out.extend(_task_diff(t, g))
    for pid in got.tasks:
        if pid not in target.tasks:
            out.append(f"task {pid}: extra ({got.tasks[pid].state}, parent {got.tasks[pid].ppid})")
    if sorted(target.namespaces) != sorted(got.namespaces):
        out.append(f"namespaces: want inits {sorted(target.namespaces)}, got {sorted(got.namespaces)}")
    return out[:limit]


def _task_diff(t: Task, g: Task) -> list[str]:
    out = []
    for f in _FIELDS:
        a, b = getattr(t, f), getattr(g, f)
        if f == "threads":
            a, b = sorted(a), sorted(b)
        if a != b:
            out.append(f"task {t.id}: {f}: want {a}, got {b}")
    if t.child_subreaper is not None and bool(t.child_subreaper) != bool(g.child_subreaper):
        out.append(f"task {t.id}: child_subreaper: want {t.child_subreaper}, got {g.child_subreaper}")
    if t.comm and t.comm != g.comm:
        out.append(f"task {t.id}: comm: want {t.comm!r}, got {g.comm!r}")
    return out
