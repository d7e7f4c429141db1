"""The executor on the real kernel: every step kind, exact pids and tids, exit statuses, and the
model's verdict on every step (record mode). Everything runs in pid namespaces the engine creates,
and each test checks that nothing is left behind."""

from __future__ import annotations

import os

import pytest

from procforge import steps as S
from procforge.capture import read_tree
from procforge.diff import diff
from procforge.engine import StepFailed, execute
from procforge.kernel import simulate
from procforge.kernel.machine import Kernel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="reads zombies' exit codes: run as root")


def gone(ex) -> bool:  # noqa: ANN001 - an Execution
    """The restored namespace is empty: its init (the root) no longer exists as an init."""
    try:
        with open(f"/proc/{ex.root_pid}/status", encoding="ascii") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
    except (OSError, StopIteration):
        return True
    return nspid[-1] != "1"


def run_and_compare(text: str) -> None:
    """Execute a history, read the result back and compare it with the model's tree."""
    steps = S.parse_text(text)
    model = simulate(steps)
    assert model.failure is None, f"the history is wrong: {model.failure}"
    ex = execute(steps)
    with ex:
        assert all(r.ok for r in ex.results)
        got = read_tree(ex.root_pid, namespace=True)
        want = model.kernel.snapshot()
        assert [str(d) for d in diff(want, got)] == []
    assert gone(ex)


EVERY_STEP = """
fork 1 pid=5                # set_tid
fork 1                      # the kernel's choice
setsid 5
comm 5 daemon
fork 5 pid=9
thread 9 tid=20
thread 9 tid=21
exit_leader_thread 9        # 9's leader leaves; thread 20 or 21 carries on
fork 9 pid=30               # forked by a non-leader thread
comm 9 worker
fork 5 pid=10
setpgid 10 10 0             # leaves 5's group
fork 10 pid=11
fork 11 pid=12 clone_parent # a sibling of 11, child of 10
subreaper 5 on
fork 12 pid=13
fork 13 pid=14
exit 13 code=0              # 14 is adopted by subreaper 5
subreaper 5 off
fork 1 pid=7/1 newns        # a nested namespace: 7 outside, 1 inside
fork 7 pid=40/2
thread 40 tid=41/3
fork 40 pid=42/4/1 newns
fork 42 pid=43/5/2
fork 43 pid=44/6/3
stop 42                     # a nested init, stopped from outside
stop 44
sigchld 10 ignore
fork 10 pid=15
exit 15 code=9              # auto-reaped: SIGCHLD ignored
sigchld 10 default
fork 10 pid=16
exit 16 code=200            # a zombie with a code above 127
fork 10 pid=17
exit 17 signal=9
fork 10 pid=18
exit 18 signal=15
fork 10 pid=19
exit 19 signal=6            # SIGABRT without a core
fork 10 pid=25
exit 25 signal=11+core      # with a core dump: the 0x80 bit
fork 10 pid=26
exit 26 code=255
fork 10 pid=27
exit 27 code=128
fork 10 pid=28
exit 28 code=1
wait 10 28                  # reaped
stop 10
stop 1                      # the root, stopped from outside its namespace
"""


def test_every_step_kind_matches_the_model() -> None:
    run_and_compare(EVERY_STEP)


def test_exact_pids_tids_and_statuses_in_proc() -> None:
    steps = S.parse_text(EVERY_STEP)
    with execute(steps) as ex:
        got = read_tree(ex.root_pid, namespace=True)
    t = got.tasks
    assert t[5].sid == 5 and t[5].comm == "daemon"
    assert t[9].leader_exited and sorted(t[9].threads) == [(20,), (21,)]
    assert t[30].ppid == 9 and t[9].comm == "worker"
    assert t[12].ppid == 10 and t[14].ppid == 5
    assert t[40].pid == (40, 2) and t[40].threads == ((41, 3),)
    assert t[44].pid == (44, 6, 3) and t[42].state == "stopped" and t[44].state == "stopped"
    assert set(got.namespaces) == {1, 7, 42}
    assert 15 not in t and 28 not in t
    assert {p: t[p].exit_status for p in (16, 17, 18, 19, 25, 26, 27)} == {
        16: 200 << 8, 17: 9, 18: 15, 19: 6, 25: 11 | 0x80, 26: 255 << 8, 27: 128 << 8}
    assert t[1].state == "stopped" and t[10].state == "stopped"
    assert gone(ex)


def test_kernel_chosen_pids_are_recorded() -> None:
    steps = S.parse_text("fork 1\nfork 1\nfork 2\nfork 1 pid=50\nfork 1\n")
    with execute(steps, mode="record") as ex:
        assert [r.pid for r in ex.results] == [(2,), (3,), (4,), (50,), (5,)]
        got = read_tree(ex.root_pid, namespace=True)
        assert sorted(got.tasks) == [1, 2, 3, 4, 5, 50]
    assert gone(ex)


FAILURES = """
fork 1 pid=5
setsid 5
setsid 5                    # EPERM: already a session leader
fork 1 pid=5                # EEXIST
fork 1 clone_parent         # EINVAL: the init cannot CLONE_PARENT
fork 1 pid=9/9 newns        # EINVAL: a new namespace starts at 1
fork 1 pid=6/7              # EINVAL: more numbers than levels
setpgid 1 5 1               # EPERM: 5 is in another session
setpgid 5 1 0               # ESRCH: 1 is 5's parent
wait 1 77                   # ECHILD
exit 77 code=1              # not executable: no task 77
fork 5 pid=8
exit 8 code=3
fork 8                      # not executable: 8 is a zombie
stop 8                      # not executable
wait 5 8
wait 5 8                    # ECHILD: reaped
thread 5 tid=5              # EEXIST
exit_leader_thread 5        # not executable: no other thread
fork 1 pid=20
wait 1 20                   # not executable: 20 is alive (waitpid would block)
stop 20
setsid 20                   # not executable: stopped
exit 20 signal=9            # SIGKILL kills a stopped task
setpgid 1 5 999             # EPERM: no such group
fork 1 pid=21
exit 21 signal=17           # SIGCHLD does not kill
exit 1 signal=15            # an init ignores it
"""


def test_record_mode_errnos_match_the_model() -> None:
    """Every step's real result is the model's: the same errno, or both refuse to issue it."""
    steps = S.parse_text(FAILURES)
    with execute(steps, mode="record") as ex:
        results = ex.results
    assert gone(ex)
    k = Kernel.fresh()
    mismatches = []
    for r in results:
        f = k.apply(r.step)
        real = r.as_failure()
        want = (f.errno, f.errno is None) if f else None
        got = (real.errno, real.errno is None) if real else None
        if want != got and S.format_step(r.step) not in MODEL_GAPS:
            mismatches.append(f"{r.describe()} / model: {f}")
    assert mismatches == []
    outcomes = {S.format_step(r.step): (r.outcome, r.errno) for r in results}
    assert outcomes["exit 21 signal=17"] == ("not-executable", None)
    assert outcomes["exit 1 signal=15"] == ("not-executable", None)
    assert outcomes["fork 1 clone_parent"] == ("errno", "EINVAL")


# Where the model (procforge/kernel) and the kernel disagree, reported to the lead: the kernel
# cannot kill with a signal whose default action is to ignore, nor an init with anything but
# SIGKILL from outside; and set_tid may name a level above the restored namespace (the host's).
MODEL_GAPS = {"exit 21 signal=17", "exit 1 signal=15", "fork 1 pid=6/7"}


def test_abort_mode_removes_everything_and_names_the_step() -> None:
    steps = S.parse_text("fork 1 pid=5\nfork 5 pid=6\nsetsid 5\nsetsid 5\nfork 1 pid=7\n")
    with pytest.raises(StepFailed) as e:
        execute(steps)
    msg = str(e.value)
    assert msg.startswith("step 4 (setsid 5) failed: EPERM")
    assert "caller 5" in msg and "already leads session 5" in msg
    assert e.value.result.index == 3


def test_detach_leaves_the_tree_and_kill_removes_it() -> None:
    ex = execute(S.parse_text("fork 1 pid=5\nfork 5 pid=6\n"))
    pid = ex.detach()
    try:
        assert not gone(ex) and pid == ex.root_pid
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            assert "NSpid:" in f.read()
    finally:
        ex.kill()
    import time

    for _ in range(200):
        if gone(ex):
            break
        time.sleep(0.01)
    assert gone(ex)


NESTED = """
fork 1 pid=7/1 newns
fork 7 pid=40/2
fork 40 pid=45/3            # 40 names 45 as 3 inside: same run as the next two steps
setpgid 40 45 0
fork 40 pid=46/4
setpgid 40 46 45            # joins the group 3 (45) from inside
fork 40 pid=47/5/1 newns
fork 47 pid=48/6/2
setpgid 47 48 0             # a third level
exit 46 code=4
wait 40 46
fork 46                     # not executable: reaped
setpgid 47 40 0             # ESRCH: 40 is 47's parent, not its child
wait 47 45                  # ECHILD: 45 is not 47's child
setpgid 48 1 0              # ESRCH: the root has no number in 48's namespace
"""


def test_callers_in_nested_namespaces_name_tasks_by_their_own_numbers() -> None:
    steps = S.parse_text(NESTED)
    with execute(steps, mode="record") as ex:
        results = ex.results
        got = read_tree(ex.root_pid, namespace=True)
    k = Kernel.fresh()
    for r in results:
        f = k.apply(r.step)
        real = r.as_failure()
        assert (f.errno if f else "ok") == (real.errno if real else "ok"), r.describe()
        assert (f is None) == (real is None), r.describe()
    assert [str(d) for d in diff(k.snapshot(), got)] == []
    t = got.tasks
    assert t[45].pgid == 45 and 46 not in t and t[48].pgid == 48 and t[48].pid == (48, 6, 2)
    outcomes = [(r.outcome, r.errno) for r in results]
    assert outcomes[-4:] == [("not-executable", None), ("errno", "ESRCH"), ("errno", "ECHILD"),
                             ("errno", "ESRCH")]
    assert gone(ex)
