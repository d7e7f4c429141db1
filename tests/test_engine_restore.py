"""Restore on the real kernel: a corpus of generated trees, a failure injected at every step of a
plan, rootless restore, restore into the current namespace, and the two commands. Every kernel
action happens in pid namespaces created here, and each test checks that nothing is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from procforge import steps as S
from procforge.engine import StepFailed, execute
from procforge.engine.restore import Mismatch, restore
from procforge.errors import EnvironmentProblem, ProcforgeError
from procforge.generate import generate

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (and the user nobody)")
PROCFORGE = [str(Path(sys.executable).parent / "procforge")]


def ns_alive(host: int) -> bool:
    """Is `host` still the init (pid 1) of a pid namespace?"""
    try:
        with open(f"/proc/{host}/status", encoding="ascii") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
    except (OSError, StopIteration):
        return False
    return len(nspid) > 1 and nspid[-1] == "1"


def wait_gone(host: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not ns_alive(host):
            return True
        time.sleep(0.01)
    return False


def plan_or_history(tree, hist):  # noqa: ANN001, ANN201
    """The planner's plan, or the generator's history where the planner gives up (reported)."""
    from procforge.planner import Unreachable, plan

    try:
        return plan(tree).steps, True
    except Unreachable:
        return hist, False


def test_corpus_of_generated_trees_restores_exactly() -> None:
    """200 generated trees of 2 to 60 tasks with every feature: restored, read back, identical."""
    planned = 0
    for seed in range(200):
        tree, hist = generate(2 + seed % 59, seed)
        steps, by_planner = plan_or_history(tree, hist)
        planned += by_planner
        r = restore(tree, steps)
        root = r.root_pid
        r.execution.kill()
        assert wait_gone(root), f"seed {seed}: the namespace survived"
    assert planned >= 190  # the executor is tested either way; the planner covers nearly all


def test_a_failure_at_every_step_removes_everything() -> None:
    tree, hist = generate(25, 11)
    steps, _ = plan_or_history(tree, hist)
    assert len(steps) >= 25
    for i in range(len(steps)):
        actor = steps[i].actor
        bad = [*steps[:i], S.Wait(actor, 4_000_000), *steps[i:]]  # ECHILD: no such child
        with pytest.raises(StepFailed) as e:
            execute(bad)
        r = e.value.result
        assert r.index == i
        msg = str(e.value)
        assert msg.startswith(f"step {i + 1} (wait {actor} 4000000) failed: ")
        if r.outcome == "errno":
            assert r.errno == "ECHILD" and "the state it met: caller" in msg
        else:  # the actor cannot act at that point (stopped or dead): no system call at all
            assert r.reason in msg
        assert msg.endswith("everything created was removed")
        assert e.value.root_pid and not ns_alive(e.value.root_pid)


def test_mismatch_is_reported_and_removed() -> None:
    tree, hist = generate(12, 3)
    with pytest.raises(Mismatch) as e:
        restore(tree, [*hist, S.Fork(1, (4000,))])
    assert e.value.differences == ["task 4000: only in B"]


def test_rootless_restore_as_nobody() -> None:
    """An unprivileged user restores a tree with every feature: the engine makes a user namespace
    with the pid namespace, where set_tid is allowed."""
    tree, _ = generate(40, 5)
    script = textwrap.dedent(f"""
        import os
        from procforge import tree as T
        from procforge.engine.restore import restore
        assert os.geteuid() != 0
        r = restore(T.loads({tree.dumps()!r}))
        print(r.root_pid, len(r.tree), flush=True)
        r.execution.kill()
    """)
    out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    root, n = map(int, out.stdout.split())
    assert n == 40 and wait_gone(root)


def test_into_current_needs_root() -> None:
    tree, hist = generate(5, 1, features=())
    script = textwrap.dedent(f"""
        from procforge import tree as T
        from procforge.errors import EnvironmentProblem
        from procforge.engine.restore import restore
        tree = T.loads({tree.dumps()!r})
        try:
            restore(tree, into="current")
        except EnvironmentProblem as e:
            print(e)
    """)
    out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert "needs root" in out.stdout, out.stderr


CURRENT = textwrap.dedent("""
    # runs as pid 1 of a private pid namespace: restores a subtree (root 500) into it
    import os, signal
    from procforge import tree as T
    from procforge.engine.restore import restore
    from procforge.errors import EnvironmentProblem
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # an init that reaps the tree's orphans
    from procforge import steps as S
    tree = T.loads(TREE)
    plan = S.parse_text(PLAN)
    r = restore(tree, plan, into="current")
    assert r.root_pid == 500, r.root_pid
    assert sorted(r.tree.tasks) == sorted(tree.tasks)
    try:  # a second restore finds its pids taken and creates nothing
        restore(tree, plan, into="current")
    except EnvironmentProblem as e:
        print("TAKEN", e)
    r.execution.kill()
    import time
    for _ in range(500):
        left = [d for d in os.listdir("/proc") if d.isdigit() and d != "1"]
        if not left:
            break
        time.sleep(0.01)
    print("LEFT", left)
""")


CURRENT_TREE = {
    "format": "procforge-tree/1",
    "tasks": [
        {"pid": [500], "ppid": 0, "pgid": 0, "sid": 0, "state": "alive"},
        {"pid": [501], "ppid": 500, "pgid": 501, "sid": 501, "state": "alive"},
        {"pid": [502], "ppid": 501, "pgid": 501, "sid": 501, "state": "alive"},
        {"pid": [503], "ppid": 502, "pgid": 501, "sid": 501, "state": "zombie",
         "exit_status": 7 << 8},
        {"pid": [504], "ppid": 501, "pgid": 504, "sid": 501, "state": "stopped",
         "threads": [[505]]},
    ],
}


CURRENT_PLAN = """
fork 500 pid=501
setsid 501
fork 501 pid=502
fork 502 pid=503
exit 503 code=7
fork 501 pid=504
setpgid 504 504 0
thread 504 tid=505
stop 504
"""


def test_restore_into_the_current_namespace() -> None:
    """Into a private pid namespace where this test's interpreter is init: a subtree whose root
    (500) is no init, then the same again, which finds its pids taken and creates nothing."""
    script = CURRENT.replace("TREE", repr(json.dumps(CURRENT_TREE))).replace(
        "PLAN", repr(CURRENT_PLAN))
    out = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                          sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "TAKEN pids taken in this namespace: 500 (task 'pf-engine')" in out.stdout
    assert "LEFT []" in out.stdout


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:  # noqa: ANN003
    return subprocess.run([*PROCFORGE, *args], capture_output=True, text=True, timeout=60, **kw)


def test_cli_restore_detach_and_pidfile(tmp_path: Path) -> None:
    tree, _ = generate(20, 8)
    f = tmp_path / "t.json"
    f.write_text(tree.dumps())
    pidfile = tmp_path / "root.pid"
    out = run_cli("restore", str(f), "--detach", "--pidfile", str(pidfile))
    assert out.returncode == 0, out.stderr
    root = int(out.stdout)
    assert pidfile.read_text() == f"{root}\n" and ns_alive(root)
    os.kill(root, signal.SIGKILL)  # the namespace's init: everything goes with it
    assert wait_gone(root)


def test_cli_restore_holds_until_interrupted(tmp_path: Path) -> None:
    tree, _ = generate(20, 9)
    f = tmp_path / "t.json"
    f.write_text(tree.dumps())
    pidfile = tmp_path / "root.pid"
    p = subprocess.Popen([*PROCFORGE, "restore", str(f), "--pidfile", str(pidfile)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    line = p.stderr.readline()
    assert "identical" in line and "holding" in line
    root = int(pidfile.read_text())
    assert ns_alive(root)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    assert wait_gone(root)


def test_cli_restore_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    out = run_cli("restore", str(bad))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    tree, hist = generate(10, 4)
    f = tmp_path / "t.json"
    f.write_text(tree.dumps())
    plan = tmp_path / "plan.txt"
    plan.write_text(S.format_text([*hist, S.Fork(1, (4000,))]))
    out = run_cli("restore", str(f), "--plan", str(plan), "--detach")
    assert out.returncode == 1 and "differs from the target" in out.stderr
    assert out.stdout == "task 4000: only in B\n"  # the differences, one a line
    failing = tmp_path / "fail.txt"
    failing.write_text("fork 1 pid=5\nsetsid 5\nsetsid 5\n")
    out = run_cli("restore", str(f), "--plan", str(failing))
    assert out.returncode == 1
    assert out.stderr.startswith("procforge: step 3 (setsid 5) failed: EPERM")


def test_cli_execute_json_and_record(tmp_path: Path) -> None:
    h = tmp_path / "h.txt"
    h.write_text("fork 1 pid=5\nsetsid 5\nsetsid 5\nfork 5\nexit 6 code=3\nwait 5 6\n")
    out = run_cli("execute", str(h), "--record", "--json", "--no-hold",
                  "-o", str(tmp_path / "o.json"))
    assert out.returncode == 1  # some steps failed
    data = json.loads(out.stdout)
    got = [(s["outcome"], s["errno"], s["pid"]) for s in data["steps"]]
    assert got == [("ok", None, [5]), ("ok", None, None), ("errno", "EPERM", None),
                   ("ok", None, [2]), ("not-executable", None, None), ("errno", "ECHILD", None)]
    assert not ns_alive(data["root_pid"])
    tree = json.loads((tmp_path / "o.json").read_text())
    assert sorted(t["pid"][0] for t in tree["tasks"]) == [1, 2, 5]
    out = run_cli("execute", str(h), "--no-hold")
    assert out.returncode == 1 and "step 3 (setsid 5) failed: EPERM" in out.stderr


def test_execute_rejects_bad_arguments() -> None:
    with pytest.raises(ProcforgeError):
        execute([], mode="maybe")
    with pytest.raises(ProcforgeError):
        execute([], root_pid=7)


def test_empty_step_list_holds_only_the_root() -> None:
    with execute([]) as ex:
        assert ns_alive(ex.root_pid) and ex.hosts == {1: ex.root_pid}
    assert not ns_alive(ex.root_pid)


def test_environment_problem_is_exit_3(tmp_path: Path) -> None:
    assert EnvironmentProblem.exit_code == 3


def test_a_killed_driver_takes_its_tree_along(tmp_path: Path) -> None:
    """The engine holds the tree for the driver; when the driver dies (even by SIGKILL) the
    engine reads end-of-file and removes the tree."""
    tree, _ = generate(15, 2)
    f = tmp_path / "t.json"
    f.write_text(tree.dumps())
    pidfile = tmp_path / "root.pid"
    p = subprocess.Popen([*PROCFORGE, "restore", str(f), "--pidfile", str(pidfile)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None and "holding" in p.stderr.readline()
    root = int(pidfile.read_text())
    assert ns_alive(root)
    p.kill()
    p.wait(timeout=10)
    assert wait_gone(root)
