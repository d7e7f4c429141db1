"""A lower bound on helper tasks, and why.

Every number used as a group or session id names the process that created that group or session
(setpgid and setsid name them after the caller's pid), and a pid number is never reused while an id
holds it. So for each id of the tree that is not the pid of a task in the tree and not external, some
process with exactly that pid existed and is gone: a helper, one per such id (a session id that is
also a group id counts once). No plan can use fewer.
"""

from __future__ import annotations

from procforge.tree import Tree


def helper_lower_bound(tree: Tree) -> tuple[int, list[str]]:
    dead: dict[int, str] = {}
    for t in tree:
        for kind, nr in (("session", t.sid), ("group", t.pgid)):
            if nr and nr not in tree.tasks and nr not in tree.external and nr not in dead:
                dead[nr] = f"{kind} {nr} (task {t.id} is in it) has no leader in the tree"
    return len(dead), list(dead.values())
