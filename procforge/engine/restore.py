"""Restore a tree: run its plan on the kernel, read the result back from /proc, compare.

Kernel facts this relies on (linux-process-semantics.md §0, §1, §7):
- a number is taken while any task, zombie or group/session id holds it: into the current namespace
  the plan's pids must be free in /proc *and* unused as a pgid or sid (a dead leader's group);
- /proc numbers follow the mount's namespace: the engine checks that the mount is its own, so the
  reader sees the restored namespace through the root's host pid;
- the child-subreaper flag is not in /proc: unless probed with ptrace, the read-back tree takes it
  from the engine, which set it with prctl and saw the call succeed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from procforge import steps as S
from procforge.engine.driver import Execution, execute, model_explainer
from procforge.errors import EnvironmentProblem, InvalidInput, ProcforgeError
from procforge.tree import Tree


class Mismatch(ProcforgeError):
    """The restored tree differs from the target (it has been removed)."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        n = len(differences)
        super().__init__(f"the restored tree differs from the target in {n} place"
                         f"{'s' if n != 1 else ''}: {differences[0]}" + ("; ..." if n > 1 else ""))


@dataclass
class Restored:
    """A restored, verified tree and the handle that holds it."""

    execution: Execution
    tree: Tree  # as read back from /proc
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def root_pid(self) -> int:
        return self.execution.root_pid


def base_level() -> int:
    """Our pid namespace's level (0 on the host): NSpid has one column per level."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) - 2
    except OSError:
        pass
    return 0


def plan_steps(tree: Tree, level: int) -> list[S.Step]:
    """The planner's plan for the tree (procforge.planner), run from a state holding its root."""
    from procforge.planner import Unreachable, plan

    try:
        return list(plan(tree, base_level=level).steps)
    except Unreachable as u:
        raise ProcforgeError(f"no plan: {u.reason}") from None


def needed_pids(tree: Tree, steps: Sequence[S.Step]) -> list[int]:
    """Top-level numbers the plan asks for by name (the root, and forks and threads with set_tid
    for every level); the kernel's own choices are not known in advance."""
    level = {t.id: t.level for t in tree}
    out = [tree.root.id]
    for s in steps:
        if isinstance(s, S.Fork) and s.pid:
            lv = level.get(s.parent, 0) + (1 if s.new_ns else 0)
            if len(s.pid) == lv + 1:
                out.append(s.pid[0])
                level.setdefault(s.pid[0], lv)
        elif isinstance(s, S.Thread) and s.tid and len(s.tid) == level.get(s.task, 0) + 1:
            out.append(s.tid[0])
    return out


def taken_pids(wanted: Sequence[int], proc: str = "/proc") -> dict[int, str]:
    """Which of the wanted numbers are in use here, and by what (a task, or a group/session id)."""
    want = set(wanted)
    taken: dict[int, str] = {}
    for n in want:
        if os.path.exists(f"{proc}/{n}"):
            try:
                with open(f"{proc}/{n}/comm", encoding="utf-8", errors="replace") as f:
                    comm = f.read().strip()
            except OSError:
                comm = "?"
            taken[n] = f"task {comm!r}"
    for d in os.listdir(proc):
        if not d.isdigit():
            continue
        try:
            with open(f"{proc}/{d}/stat", "rb") as f:
                tail = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pgrp, session = int(tail[2]), int(tail[3])
        for n, what in ((pgrp, "a process group id"), (session, "a session id")):
            if n in want and n not in taken:
                taken[n] = f"{what} (of task {d})"
    return taken


def check(target: Tree, got: Tree, ex: Execution) -> list[str]:
    """Differences between the target and the tree read back, as lines. Ids outside the tree (the
    restorer's group and session, the root's parent) are the environment's: they match whatever
    the target names there."""
    from procforge.diff import diff

    got = _normalize(target, got, ex)
    return [str(d) for d in diff(target, got)]


def _normalize(target: Tree, got: Tree, ex: Execution) -> Tree:
    troot, groot = target.root, got.tasks.get(target.root.id)
    inside = set(got.tasks)
    env = {}
    if groot is not None:
        for g, t in ((groot.pgid, troot.pgid), (groot.sid, troot.sid)):
            if g not in inside:
                env[g] = t
    tasks = []
    for t in got:
        fields: dict[str, object] = {}
        if t.pgid in env:
            fields["pgid"] = env[t.pgid]
        if t.sid in env:
            fields["sid"] = env[t.sid]
        if t.id == troot.id and t.ppid not in inside:
            fields["ppid"] = troot.ppid
        if t.child_subreaper is None:
            fields["child_subreaper"] = t.id in ex.subreapers
        tasks.append(replace(t, **fields) if fields else t)
    return replace(got.replace_tasks(tasks), external=target.external)


def _refuse_trapped_inits(tree: Tree, steps: Sequence[S.Step], level: int) -> None:
    """A tree whose namespace init sits in a group or session named after another pid of its own
    namespace can be built, but never removed (the init's death waits for that pid for ever)."""
    from procforge.planner import start_state
    from procforge.planner.build import trapped_inits

    k = start_state(tree, level)
    if k.run(steps) is not None:
        return  # the executor reports the failing step itself
    trapped = trapped_inits(k)
    if trapped:
        raise InvalidInput(f"{trapped[0]}: the kernel could never remove such a tree "
                           "(zap_pid_ns_processes would wait for ever); refusing to build it",
                           source=tree.source or None)


def restore(tree: Tree, steps: Sequence[S.Step] | None = None, *, into: str = "new-namespace",
            userns: bool | None = None, verify: bool = True,
            probe_subreaper: bool = False) -> Restored:
    """Build `tree` on the kernel (its plan, or `steps`), verify it, and return the held result.

    Raises StepFailed (a step failed) or Mismatch (it differs from the target); either way nothing
    is left behind."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    level = base_level()
    root = tree.root
    if into == "new-namespace":
        if not tree.is_ns_init(root.id) or root.pid != (1,):
            raise InvalidInput(f"the root {root.id} is not a namespace init with pid 1: restore "
                               "it into the current namespace (--into current)",
                               source=tree.source or None)
    elif into != "current":
        raise InvalidInput(f"into must be new-namespace or current, not {into!r}")
    if into == "current":
        from procforge.engine.driver import has_set_tid_capability

        if not has_set_tid_capability():
            raise EnvironmentProblem("--into current needs root (CAP_SYS_ADMIN or "
                                     "CAP_CHECKPOINT_RESTORE) to place pids with set_tid")
    if steps is None:
        steps = plan_steps(tree, level + (1 if into == "new-namespace" else 0))
        timings["plan"] = time.perf_counter() - t0
    steps = list(steps)
    _refuse_trapped_inits(tree, steps, level + (1 if into == "new-namespace" else 0))
    if into == "current":
        taken = taken_pids(needed_pids(tree, steps))
        if taken:
            shown = ", ".join(f"{n} ({w})" for n, w in sorted(taken.items())[:10])
            more = f" and {len(taken) - 10} more" if len(taken) > 10 else ""
            raise EnvironmentProblem(f"pids taken in this namespace: {shown}{more}; "
                                     "nothing was created")
    start = None
    if into == "current":
        from procforge.planner import start_state

        def start():  # noqa: ANN202 - the model's starting state, for error messages
            return start_state(tree, level)

    t1 = time.perf_counter()
    ex = execute(steps, mode="abort", into=into, root_pid=root.id if into == "current" else None,
                 userns=userns, explain=model_explainer(steps, start))
    timings["execute"] = time.perf_counter() - t1
    try:
        t2 = time.perf_counter()
        from procforge.capture import read_tree

        got = read_tree(ex.root_pid, namespace=into == "new-namespace",
                        probe_subreaper=probe_subreaper)
        timings["read"] = time.perf_counter() - t2
        if verify:
            t3 = time.perf_counter()
            diffs = check(tree, got, ex)
            timings["compare"] = time.perf_counter() - t3
            if diffs:
                raise Mismatch(diffs)
    except BaseException:
        ex.kill()
        raise
    timings["total"] = time.perf_counter() - t0
    return Restored(ex, got, timings)
