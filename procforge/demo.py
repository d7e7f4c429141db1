"""`procforge demo`: build a tree CRIU cannot restore, read it, plan it, restore it, compare.

Everything happens for real, in two private pid namespaces that are removed at the end: the original
tree is made by running a history with the engine (pids left to the kernel), captured from /proc
(with the ptrace subreaper probe), planned, restored into a fresh namespace with exact pids, captured
again, and compared field by field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from procforge import planner
from procforge import steps as S
from procforge.diff import diff
from procforge.show import render, summary
from procforge.tree import Tree

HISTORY = """\
# a tree CRIU cannot restore, built by running this history in a fresh pid namespace
setsid 1
comm 1 demo-init
fork 1                      # 2: a child subreaper
subreaper 2 on
fork 2                      # 3: leader of session 3, which will die
setsid 3
fork 3                      # 4: member of session 3
exit 3 code=0               # 4 is orphaned and adopted by the subreaper 2
wait 2 3
fork 1                      # 5: leader of session 5
setsid 5
fork 5 clone_parent         # 6: a sibling of 5 (child of 1) made in session 5
fork 5                      # 7: makes group 7, then leaves it for group 5
setpgid 7 7 0
fork 7                      # 8: stays in group 7, whose leader left
setpgid 7 7 5
fork 1                      # 9: exits with 200 and stays a zombie
exit 9 code=200
fork 1 newns                # 10: init of a nested pid namespace (10/1)
fork 10                     # 11 (11/2): killed by SIGTERM, a zombie inside
exit 11 signal=15
fork 10                     # 12 (12/3)
thread 12                   # its second thread, 13 (13/4)
stop 8
"""


@dataclass
class DemoResult:
    original: Tree
    restored: Tree
    plan: planner.Plan
    differences: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.differences


def side_by_side(a: Tree, b: Tree, titles: tuple[str, str]) -> str:
    left, right = list(render(a)), list(render(b))
    lw = max((len(x) for x in left + [titles[0]]), default=0)
    rw = max((len(x) for x in right + [titles[1]]), default=0)
    out = [f"{titles[0]:<{lw}} | {titles[1]}", f"{'-' * lw}-+-{'-' * rw}"]
    for i in range(max(len(left), len(right))):
        lx = left[i] if i < len(left) else ""
        rx = right[i] if i < len(right) else ""
        out.append(f"{lx:<{lw}} | {rx}")
    return "\n".join(out)


def gone(host_pids: list[int], timeout: float = 5.0) -> bool:
    """True once none of these host pids exists any more (the namespaces' inits were killed)."""
    import os

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") for p in host_pids):
            return True
        time.sleep(0.01)
    return False


def run(say: Callable[[str], None] = print) -> DemoResult:
    from procforge.capture import read_tree
    from procforge.engine.driver import execute
    from procforge.engine.restore import restore

    history = S.parse_text(HISTORY, "demo history")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    say(f"1. building the original tree: {len(history)} system calls in a new pid namespace")
    original_ex = execute(history, mode="abort")
    restored_ex = None
    try:
        t["build"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        original = read_tree(original_ex.root_pid, namespace=True, probe_subreaper=True)
        t["capture"] = time.perf_counter() - t1
        say(f"2. captured it from /proc (host pid of its init: {original_ex.root_pid}): "
            f"{summary(original)}")
        t2 = time.perf_counter()
        p = planner.plan(original)
        t["plan"] = time.perf_counter() - t2
        st = p.stats()
        say(f"3. planned it: {st['steps']} steps, {st['helpers']} helper task(s) "
            f"(lower bound {st['helper_lower_bound']}), checked on the kernel model")
        t3 = time.perf_counter()
        restored = restore(original, p.steps, verify=False, probe_subreaper=True)
        restored_ex = restored.execution
        t["restore"] = time.perf_counter() - t3
        say(f"4. restored it into a fresh pid namespace (host pid of its init: "
            f"{restored_ex.root_pid}) and captured it again")
        diffs = [str(d) for d in diff(original, restored.tree)]
    finally:
        roots = [original_ex.root_pid] + ([restored_ex.root_pid] if restored_ex else [])
        if restored_ex is not None:
            restored_ex.kill()
        original_ex.kill()
    if not gone(roots):
        diffs.append(f"a namespace init ({roots}) is still alive after the demo")
    t["total"] = time.perf_counter() - t0
    return DemoResult(original, restored.tree, p, diffs, t)
