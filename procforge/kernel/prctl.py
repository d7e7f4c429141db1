"""prctl: PR_SET_CHILD_SUBREAPER and PR_SET_NAME (`kernel/sys.c`: `prctl_set_child_subreaper` path,
`propagate_has_child_subreaper`).

Facts this relies on (semantics §6):
- the flag is per process (`signal->is_child_subreaper`), not inherited by fork;
- setting it walks the existing descendants (`walk_process_tree`) and sets `has_child_subreaper` on
  each, not descending below a process that already has `has` set (its subtree has it too) or is a
  namespace init (`is_child_reaper`: its subtree never leaves its namespace);
- unsetting clears only `is_child_subreaper`; the stale `has` hint stays and only lets the exit walk
  go on up.
"""

from __future__ import annotations

from procforge.kernel.state import Process


def do_subreaper(proc: Process, on: bool) -> None:
    proc.is_subreaper = on
    if not on:
        return
    stack = list(proc.children.values())
    while stack:
        p = stack.pop()
        if p.has_subreaper or p.unkillable:
            continue
        p.has_subreaper = True
        stack.extend(p.children.values())


def do_comm(proc: Process, name: str) -> None:
    proc.comm = name[:15]
