"""read_tree on real trees built in private pid namespaces, and on hand-made /proc directories for
the cases a live kernel will not hold still for (a tree changing between the two passes)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from test_capture_world import World

from procforge.capture import proc as P
from procforge.capture.proc import CaptureUnstable, read_tree
from procforge.errors import InvalidInput, ProcforgeError
from procforge.invariants import check_tree
from procforge.tree import ALIVE, STOPPED, ZOMBIE, Task, Tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for pid namespaces")

FEATURES = r'''
def session_leader():
    setsid()
    report("a_kid", spawn())
    report("a_zombie", spawn(lambda: 7))
report("a", spawn(session_leader))
report("z", spawn(lambda: 9))
report("k", spawn(lambda: "kill"))
report("s", spawn(lambda: "stop"))
report("t", spawn(lambda: (report("tids", threads(2)), None)[-1]))
report("l", spawn(lambda: (report("ltid", threads(1)), "exit_leader")[-1]))
def nested():
    newns()
    def inner_init():
        report("i_kid", spawn(lambda: comm("inner")))
        report("i_zombie", spawn(lambda: 3))
    report("i", spawn(inner_init))
report("n", spawn(nested))
report("g", spawn(lambda: (setpgid(0, 0), comm("group-leader"))[-1]))
def dead_leader():
    setpgid(0, 0)
    report("orphan", spawn())
    return 5
g2 = spawn(dead_leader)
report("g2", g2)
reap(g2)
'''


def _expected(info: dict) -> Tree:
    i = info
    T = Task
    tasks = [
        T((1,), 0, 0, 0),
        T((i["a"],), 1, i["a"], i["a"]),
        T((i["z"],), 1, 0, 0, ZOMBIE, 9 << 8),
        T((i["k"],), 1, 0, 0, ZOMBIE, 9),
        T((i["s"],), 1, 0, 0, STOPPED),
        T((i["t"],), 1, 0, 0, ALIVE, None, tuple((x,) for x in i["tids"])),
        T((i["l"],), 1, 0, 0, ALIVE, None, tuple((x,) for x in i["ltid"]), True),
        T((i["n"],), 1, 0, 0),
        T((i["g"],), 1, i["g"], 0, comm="group-leader"),
        T((i["orphan"],), 1, i["g2"], 0),
        T((i["a_kid"],), i["a"], i["a"], i["a"]),
        T((i["a_zombie"],), i["a"], i["a"], i["a"], ZOMBIE, 7 << 8),
        T((i["n"] + 1, 1), i["n"], 0, 0),
        T((i["n"] + 2, i["i_kid"]), i["n"] + 1, 0, 0, comm="inner"),
        T((i["n"] + 3, i["i_zombie"]), i["n"] + 1, 0, 0, ZOMBIE, 3 << 8),
    ]
    return Tree({t.id: t for t in tasks}, namespaces=(1, i["n"] + 1))


def _strip(tree: Tree, keep_comm: set[str]) -> dict[int, Task]:
    """Tasks with comm kept only where the test set it (the rest is the interpreter's name)."""
    from dataclasses import replace

    return {p: replace(t, comm=t.comm if t.comm in keep_comm else "", child_subreaper=False)
            for p, t in tree.tasks.items()}


def _host_pid(world: World, inner: tuple[int, ...]) -> int:
    """The host pid of the task whose NSpid ends with `inner` below the world's init."""
    todo = [world.init]
    while todo:
        p = todo.pop()
        with open(f"/proc/{p}/status") as f:
            ns = next(ln for ln in f if ln.startswith("NSpid:")).split()[1:]
        if tuple(int(x) for x in ns[-len(inner):]) == inner and len(ns) == len(inner) + 1:
            return p
        for tid in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{tid}/children") as f:
                todo.extend(int(x) for x in f.read().split())
    raise LookupError(inner)


@pytest.fixture(scope="module")
def features():
    with World(FEATURES) as w:
        yield w


def test_whole_namespace_every_feature(features: World) -> None:
    tree = read_tree(features.init)
    check_tree(tree)
    want = _expected(features.info)
    assert list(tree.tasks) == list(want.tasks) or set(tree.tasks) == set(want.tasks)
    assert _strip(tree, {"inner", "group-leader"}) == _strip(want, {"inner", "group-leader"})
    assert tree.namespaces == want.namespaces
    assert tree.external == frozenset()  # the group of the reaped leader g2 is dead, not external
    assert features.info["g2"] not in tree.tasks
    assert all(t.child_subreaper is None for t in tree)  # no probe: unknown


def test_host_proc_and_namespace_proc_agree(features: World) -> None:
    outside = read_tree(features.init)
    inside = read_tree(1, proc=features.proc_root)
    assert outside.tasks == inside.tasks
    assert outside.namespaces == inside.namespaces and outside.external == inside.external


def test_nested_namespace_alone(features: World) -> None:
    i = features.info
    host = _host_pid(features, (i["n"] + 1, 1))
    tree = read_tree(host)
    assert [t.pid for t in tree] == [(1,), (i["i_kid"],), (i["i_zombie"],)]
    assert tree.namespaces == (1,)
    # its group and session were made outside its namespace: invisible there
    assert {(t.pgid, t.sid) for t in tree} == {(0, 0)}
    assert tree[i["i_zombie"]].exit_status == 3 << 8


def test_subtree_marks_outside_ids(features: World) -> None:
    i = features.info
    sub = read_tree(i["a"], namespace=False, proc=features.proc_root)
    assert set(sub.tasks) == {i["a"], i["a_kid"], i["a_zombie"]}
    assert sub.root.ppid == 1 and sub.external == frozenset({1})  # init lives outside the subtree
    check_tree(sub)
    # a group whose leader lives outside: external; a group whose leader is gone: dead (not listed)
    g_sub = read_tree(i["g"], namespace=False, proc=features.proc_root)
    assert g_sub.external == frozenset({1})
    orphan = read_tree(i["orphan"], namespace=False, proc=features.proc_root)
    assert orphan.root.pgid == i["g2"] and i["g2"] not in orphan.external
    # the same subtree read through the host's /proc: numbers of the task's own namespace
    host = _host_pid(features, (i["a"],))
    assert read_tree(host, namespace=False).tasks == sub.tasks


def test_bad_pids(features: World) -> None:
    with pytest.raises(InvalidInput, match="no process"):
        read_tree(4_000_000)
    tid = features.info["tids"][0]
    with pytest.raises(InvalidInput, match="is a thread of process"):
        read_tree(tid, proc=features.proc_root)
    with pytest.raises(InvalidInput, match="not a pid namespace init"):
        read_tree(features.info["a"], proc=features.proc_root)


def test_setns_entrant_is_refused(features: World) -> None:
    with subprocess.Popen(["nsenter", "-t", str(features.init), "-p", "--", "sleep", "60"]) as p:
        try:
            deadline = time.monotonic() + 10
            while not _children(p.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(ProcforgeError, match="with setns"):
                read_tree(features.init)
            # the init's descendants alone are a tree
            assert len(read_tree(features.init, namespace=False)) == len(_expected(features.info))
        finally:
            for c in _children(p.pid):
                os.kill(c, 9)
            p.wait()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def test_second_child_after_unshare_is_refused() -> None:
    script = "def f():\n    newns()\n    spawn()\n    spawn()\nreport('x', spawn(f))\n"
    with World(script) as w, pytest.raises(ProcforgeError, match="nested pid namespace with setns"):
        read_tree(w.init)


def test_busy_tree_is_consistent_or_reported() -> None:
    """A process forking and reaping without pause: each capture is a consistent tree or fails
    with CaptureUnstable, never a mix of two moments."""
    script = r'''
def churn():
    import os
    def loop():
        while True:
            p = os.fork()
            if p == 0:
                os._exit(0)
            os.waitpid(p, 0)
    import threading
    threading.Thread(target=loop, daemon=True).start()
report("c", spawn(churn))
'''
    with World(script) as w:
        outcomes = set()
        for _ in range(5):
            try:
                tree = read_tree(w.init)
            except CaptureUnstable:
                outcomes.add("unstable")
                continue
            check_tree(tree)
            c = tree[w.info["c"]]
            assert len(c.threads) == 1
            assert all(t.ppid in (0, 1, c.id) for t in tree)
            outcomes.add("tree")
        assert outcomes


# ------------------------------------------------------------------------- hand-made /proc trees


def _fake(root: Path, pid: int, ppid: int, pgid: int, sid: int, state: str = "S",
          comm: str = "x", nspid: tuple[int, ...] | None = None, threads: int = 1,
          exit_code: int = 0, stat_override: dict[int, str] | None = None) -> None:
    d = root / str(pid)
    (d / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
    fields = ["0"] * 50
    fields[0], fields[1], fields[2], fields[3] = state, str(ppid), str(pgid), str(sid)
    fields[17], fields[49] = str(threads), str(exit_code)
    for k, v in (stat_override or {}).items():
        fields[k] = v
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    ns = nspid or (pid,)
    (d / "status").write_text(
        f"Name:\t{comm}\nUmask:\t0022\nState:\t{state} (x)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n"
        f"PPid:\t{ppid}\nTracerPid:\t0\nNStgid:\t{ns[0]}\nNSpid:\t" + "\t".join(map(str, ns))
        + f"\nNSpgid:\t{pgid}\nNSsid:\t{sid}\nKthread:\t0\nThreads:\t{threads}\n")


def test_fake_proc_odd_comm_and_zombie(tmp_path: Path) -> None:
    _fake(tmp_path, 1, 0, 1, 1)
    _fake(tmp_path, 5, 1, 1, 1, comm="a) (b", state="Z", exit_code=0x8B)
    tree = read_tree(1, proc=str(tmp_path))
    assert tree[5].comm == "a) (b" and tree[5].state == ZOMBIE and tree[5].exit_status == 0x8B


def test_fake_proc_change_between_passes_retries_then_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, 1, 0, 1, 1)
    _fake(tmp_path, 5, 1, 1, 1, stat_override={1: "7"})  # stat says parent 7, status says 1
    _fake(tmp_path, 7, 1, 1, 1)
    sleeps: list[float] = []
    monkeypatch.setattr(P.time, "sleep", sleeps.append)
    with pytest.raises(CaptureUnstable, match="task 5 changed parent"):
        read_tree(1, proc=str(tmp_path))
    assert len(sleeps) == P.ATTEMPTS

    def settle(_: float) -> None:  # the tree holds still after the first attempt
        _fake(tmp_path, 5, 1, 1, 1)

    monkeypatch.setattr(P.time, "sleep", settle)
    assert read_tree(1, proc=str(tmp_path))[5].ppid == 1


def test_fake_proc_not_proc(tmp_path: Path) -> None:
    from procforge.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem, match="not a proc file system"):
        read_tree(1, proc=str(tmp_path))
