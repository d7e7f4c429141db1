"""Numbers for helper tasks: free at every level of their namespace and never used by the target.

A helper must not take a number the target tree uses at that level (a task, a thread, a group or
session id), nor one the caller asked to avoid (pids taken in the namespace we restore into). Helpers
are reaped before the plan ends, so their numbers are free again afterwards.
"""

from __future__ import annotations

from procforge.kernel.state import PID_MAX_NS
from procforge.tree import Tree


class PidPool:
    """Per-namespace counters over numbers the target does not use."""

    def __init__(self, tree: Tree, ns_chain: dict[int, tuple[int, ...]], avoid: frozenset[int] = frozenset(),
                 pid_max: int = PID_MAX_NS) -> None:
        # key: (init of the namespace at that level, level)
        self.used: dict[tuple[int, int], set[int]] = {}
        self.next: dict[tuple[int, int], int] = {}
        self.pid_max = pid_max
        top = self._key(ns_chain[tree.root.id], 0)
        for t in tree:
            chain = ns_chain[t.id]
            for nrs in (t.pid, *t.threads):
                for lvl, nr in enumerate(nrs):
                    self.used.setdefault(self._key(chain, lvl), set()).add(nr)
            for x in (t.pgid, t.sid):
                if x:
                    self.used.setdefault(top, set()).add(x)
        self.used.setdefault(top, set()).update(tree.external, avoid)

    @staticmethod
    def _key(chain: tuple[int, ...], lvl: int) -> tuple[int, int]:
        return (chain[lvl], lvl)

    def take(self, chain: tuple[int, ...], top: int | None = None) -> tuple[int, ...]:
        """Numbers for a helper in the namespace whose init chain is `chain` (top level first);
        `top` fixes the top-level number (a dead leader's id)."""
        out: list[int] = []
        for lvl in range(len(chain)):
            key = self._key(chain, lvl)
            used = self.used.setdefault(key, set())
            if lvl == 0 and top is not None:
                nr = top
            else:
                nr = self.next.get(key) or (max(used, default=1) + 1)
                while nr in used:
                    nr += 1
                if nr >= self.pid_max:
                    nr = 2
                    while nr in used:
                        nr += 1
                self.next[key] = nr + 1
            used.add(nr)
            out.append(nr)
        return tuple(out)
