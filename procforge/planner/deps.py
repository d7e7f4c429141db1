"""The dependency graph of a plan: which steps must come before which.

A step depends on the step that created each task it names (its actor, target, parent or child),
on the last earlier step that changed the state of those tasks (their session, group, flags or life),
and, for a step that joins or names a group or session, on the step that made that id exist. Steps
with no path between them touch disjoint tasks and could run in parallel; drawing the graph shows a
reader why the plan is shaped as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from procforge import steps as S


def _touches(step: S.Step) -> tuple[list[int], list[int]]:
    """(tasks read, tasks written/created) by a step, by top-level pid."""
    match step:
        case S.Fork(parent, pid, _cp, _ns):
            return [parent], ([pid[0]] if pid else [])
        case S.Thread(task, _tid):
            return [task], [task]
        case S.Setsid(task) | S.Subreaper(task, _) | S.Sigchld(task, _) | S.Comm(task, _):
            return [task], [task]
        case S.Setpgid(caller, target, pgid):
            return [caller] + ([pgid] if pgid else []), [target or caller]
        case S.Exit(task, _) | S.ExitLeaderThread(task) | S.Stop(task):
            return [task], [task]
        case S.Wait(parent, child):
            return [parent, child], [child]
    return [], []


def dependencies(steps: Sequence[S.Step]) -> list[list[int]]:
    """For each step, the indices of the earlier steps it directly depends on."""
    last: dict[int, int] = {}
    out: list[list[int]] = []
    for i, st in enumerate(steps):
        reads, writes = _touches(st)
        deps = sorted({last[t] for t in reads + writes if t in last})
        out.append(deps)
        for t in reads + writes:
            last[t] = i
    return out


def to_dot(steps: Sequence[S.Step], name: str = "plan") -> str:
    deps = dependencies(steps)
    lines = [f'digraph "{name}" {{', "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    for i, st in enumerate(steps):
        label = S.format_step(st).replace('"', '\\"')
        lines.append(f'  s{i} [label="{i + 1}: {label}"];')
    for i, ds in enumerate(deps):
        for d in ds:
            lines.append(f"  s{d} -> s{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def critical_path(steps: Sequence[S.Step]) -> int:
    """Length of the longest chain of dependent steps (the plan's depth if run in parallel)."""
    deps = dependencies(steps)
    depth = [0] * len(steps)
    for i, ds in enumerate(deps):
        depth[i] = 1 + max((depth[d] for d in ds), default=0)
    return max(depth, default=0)
