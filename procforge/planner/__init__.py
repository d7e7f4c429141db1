"""Plans for every reachable tree, and a reason for every unreachable one.

`plan(tree)` returns the steps that build the tree from a state holding only its root (see
`start_state`), already executed by the kernel model and checked against the tree; `check(tree)` says
whether a plan exists and why not; `verify(tree, steps)` runs steps in the model and lists differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from procforge import steps as S
from procforge.gcpause import paused
from procforge.kernel.state import Failure
from procforge.planner.build import BuildResult, Helper, Unreachable, build, start_state
from procforge.planner.verify import differences
from procforge.tree import Tree


@dataclass
class Plan:
    tree: Tree
    steps: list[S.Step]
    helpers: list[Helper]

    def stats(self) -> dict[str, object]:
        from procforge.planner.bounds import helper_lower_bound

        bound, why = helper_lower_bound(self.tree)
        over = [h.why for h in self.helpers if h.role not in ("session", "group")]
        return {
            "tasks": len(self.tree),
            "steps": len(self.steps),
            "helpers": len(self.helpers),
            "helper_lower_bound": bound,
            "bound_reasons": why,
            "above_bound_because": over,
        }


@dataclass
class Verdict:
    reachable: bool
    reason: str = ""
    tasks: tuple[int, ...] = ()


def plan(tree: Tree, *, base_level: int = 1, avoid: frozenset[int] = frozenset()) -> Plan:
    """A plan for `tree`, or Unreachable with the reason."""
    with paused():
        res: BuildResult = build(tree, base_level, avoid)
    assert res.kernel is not None
    diff = differences(tree, res.kernel.snapshot())
    if diff:
        raise Unreachable("the planner could not reproduce the tree: " + "; ".join(diff[:3]))
    return Plan(tree, res.steps, res.helpers)


def check(tree: Tree) -> Verdict:
    try:
        plan(tree)
    except Unreachable as u:
        return Verdict(False, u.reason, u.tasks)
    return Verdict(True)


@dataclass
class VerifyResult:
    failed_at: int | None
    failure: Failure | None
    differences: list[str]

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.differences


def verify(tree: Tree, steps: Sequence[S.Step], base_level: int = 1) -> VerifyResult:
    with paused():
        k = start_state(tree, base_level)
        r = k.run(steps)
    if r is not None:
        return VerifyResult(r[0], r[1], [])
    return VerifyResult(None, None, differences(tree, k.snapshot()))


__all__ = ["Plan", "Unreachable", "Verdict", "check", "plan", "start_state", "verify"]
