"""Kernel model, §0-§1 of linux-process-semantics.md: pid numbers, fork/clone3, set_tid,
CLONE_PARENT, CLONE_NEWPID, threads. Each test is named after the rule it checks and asserts the
errno or outcome."""

from __future__ import annotations

import pytest
from modelkit import fail, run

from procforge import steps as S
from procforge.kernel import Kernel
from procforge.kernel.pids import alloc_pid
from procforge.kernel.state import PID_MAX_NS, KernelRefusal


def task(k: Kernel, pid: int):  # noqa: ANN201 - a tree Task
    return k.snapshot().tasks[pid]


# ------------------------------------------------------------------------------------ allocation


def test_alloc_pid_is_cyclic_from_last_pid_plus_one() -> None:
    k = run("fork 1\nfork 1\nfork 1")
    assert sorted(k.procs) == [1, 2, 3, 4]


def test_alloc_pid_set_tid_does_not_move_the_cursor() -> None:
    k = run("fork 1 pid=100\nfork 1")
    assert sorted(k.procs) == [1, 2, 100]


def test_alloc_pid_skips_numbers_in_use() -> None:
    k = run("fork 1 pid=2\nfork 1 pid=3\nfork 1")
    assert sorted(k.procs) == [1, 2, 3, 4]


def test_alloc_pid_wraps_at_pid_max_to_reserved_300() -> None:
    k = Kernel.fresh()
    k.top_ns.cursor = PID_MAX_NS - 1  # as after writing ns_last_pid = 4194302
    run("fork 1\nfork 1", k)
    assert sorted(k.procs) == [1, 300, PID_MAX_NS - 1]


def test_alloc_pid_below_300_until_the_first_wrap() -> None:
    k = run("fork 1 pid=299\nfork 1")
    k.top_ns.cursor = 250
    run("fork 1", k)
    assert 250 in k.procs


def test_alloc_pid_eagain_when_the_namespace_is_full() -> None:
    k = run("fork 1\nfork 1")
    k.top_ns.pid_max = 4  # numbers 1..3 exist, all used
    assert fail(k, "fork 1") == "EAGAIN"


def test_pid_max_is_per_namespace_4194304_inside_a_new_one() -> None:
    k = run("fork 1 newns\nfork 2 pid=40000")
    assert task(k, 3).pid == (3, 40000)
    assert fail(k, f"fork 2 pid={PID_MAX_NS}") == "EINVAL"


# ----------------------------------------------------------------------- numbers held by references


def test_eexist_for_pid_held_only_as_pgid_after_leader_reaped() -> None:
    # leader 2 makes group 2, its child 3 stays in it; 2 is reaped: /proc/2 gone, number still held
    k = run("fork 1\nsetpgid 2 2 0\nfork 2\nexit 2 code=0\nwait 1 2")
    assert 2 not in k.procs and task(k, 3).pgid == 2
    assert fail(k, "fork 1 pid=2") == "EEXIST"


def test_eexist_for_pid_held_only_as_sid_after_leader_reaped() -> None:
    k = run("fork 1\nsetsid 2\nfork 2\nsetpgid 3 3 0\nexit 2 code=0\nwait 1 2")
    assert task(k, 3).sid == 2 and task(k, 3).pgid == 3
    assert fail(k, "fork 1 pid=2") == "EEXIST"


def test_eexist_for_a_zombie_and_a_thread() -> None:
    k = run("fork 1\nexit 2 code=3\nthread 1 tid=9")
    assert fail(k, "fork 1 pid=2") == "EEXIST"
    assert fail(k, "fork 1 pid=9") == "EEXIST"


def test_reaped_pid_with_no_references_is_free_again() -> None:
    k = run("fork 1\nexit 2 code=0\nwait 1 2\nfork 1 pid=2")
    assert task(k, 2).state == "alive"


def test_pid_freed_when_last_group_member_is_reaped() -> None:
    k = run("fork 1\nsetpgid 2 2 0\nfork 2\nexit 2 code=0\nwait 1 2\nexit 3 code=0\nwait 1 3")
    run("fork 1 pid=2", k)


# ------------------------------------------------------------------------------------- set_tid


def test_set_tid_longer_than_levels_einval() -> None:
    # one entry more than the model's levels names the host's level (tests/test_model_regress.py)
    assert fail(Kernel.fresh(), "fork 1 pid=5/5/5") == "EINVAL"


def test_set_tid_zero_or_negative_einval() -> None:
    k = Kernel.fresh()
    assert k.apply(S.Fork(1, (0,))).errno == "EINVAL"


def test_set_tid_at_or_above_pid_max_einval() -> None:
    assert fail(Kernel.fresh(), f"fork 1 pid={PID_MAX_NS}") == "EINVAL"
    run(f"fork 1 pid={PID_MAX_NS - 1}")


def test_set_tid_not_1_in_a_namespace_without_init_einval() -> None:
    assert fail(Kernel.fresh(), "fork 1 pid=5 newns") == "EINVAL"
    assert fail(Kernel.fresh(), "fork 1 pid=7/5 newns") == "EINVAL"


def test_set_tid_1_300_newns_gives_1_inside_300_outside() -> None:
    k = run("fork 1 pid=300/1 newns")
    assert task(k, 300).pid == (300, 1)


def test_set_tid_partial_names_the_innermost_levels() -> None:
    k = run("fork 1 newns\nfork 2 pid=77")
    assert task(k, 3).pid == (3, 77)


def test_set_tid_checks_per_level_innermost_first_einval_before_eexist() -> None:
    # alloc_pid walks from the innermost level out: EEXIST inside is met before EINVAL outside
    k = run("fork 1 newns\nfork 2 pid=50")
    assert fail(k, f"fork 2 pid={PID_MAX_NS}/50") == "EEXIST"
    # within one level EINVAL (range) is checked before EEXIST
    assert fail(k, f"fork 2 pid=3/{PID_MAX_NS}") == "EINVAL"


def test_alloc_pid_enomem_when_namespace_no_longer_adding() -> None:
    k = run("fork 1 newns")
    ns = k.procs[2].ns
    ns.adding = False  # PIDNS_ADDING cleared: the init died (reachable only via setns)
    cursors = (ns.cursor, k.top_ns.cursor)
    with pytest.raises(KernelRefusal) as e:
        alloc_pid(ns, None)
    assert e.value.failure.errno == "ENOMEM"
    assert set(ns.pids) == {1} and set(k.top_ns.pids) == {1, 2}
    # the numbers were allocated, then freed: idr_alloc_cyclic's cursors stay advanced
    assert (ns.cursor, k.top_ns.cursor) == (cursors[0] + 1, cursors[1] + 1)


# ------------------------------------------------------------------------------------------ fork


def test_fork_child_inherits_pgid_and_sid_from_caller() -> None:
    k = run("fork 1\nsetsid 2\nfork 2\nsetpgid 3 3 0\nfork 3")
    t = task(k, 4)
    assert (t.ppid, t.pgid, t.sid) == (3, 3, 2)


def test_fork_child_is_not_subreaper_but_inherits_has_child_subreaper() -> None:
    k = run("fork 1\nsubreaper 2 on\nfork 2")
    assert task(k, 3).child_subreaper is False
    assert k.procs[3].has_subreaper


def test_fork_copies_sigchld_ignore() -> None:
    k = run("fork 1\nsigchld 2 ignore\nfork 2")
    assert k.procs[3].sigchld_ign


def test_fork_by_zombie_or_stopped_task_is_not_executable() -> None:
    k = run("fork 1\nexit 2 code=0\nfork 1\nstop 3")
    assert fail(k, "fork 2") is None
    assert fail(k, "fork 3") is None
    assert fail(k, "fork 99") is None


# ----------------------------------------------------------------------------------- CLONE_PARENT


def test_clone_parent_child_gets_callers_parent_and_callers_group() -> None:
    k = run("fork 1\nsetpgid 2 2 0\nfork 2 clone_parent")
    t = task(k, 3)
    assert (t.ppid, t.pgid, t.sid) == (1, 2, 0)


def test_clone_parent_caller_gets_echild_and_grandparent_reaps() -> None:
    k = run("fork 1\nfork 2 clone_parent\nexit 3 code=4")
    assert fail(k, "wait 2 3") == "ECHILD"
    run("wait 1 3", k)
    assert 3 not in k.procs


def test_clone_parent_from_namespace_init_einval() -> None:
    assert fail(Kernel.fresh(), "fork 1 clone_parent") == "EINVAL"
    k = run("fork 1 newns")
    assert fail(k, "fork 2 clone_parent") == "EINVAL"


def test_clone_parent_einval_checked_before_namespace_limit_enospc() -> None:
    k = Kernel.fresh(base_level=32)
    assert fail(k, "fork 1 clone_parent newns") == "EINVAL"


def test_clone_parent_with_newpid_from_non_init_is_allowed() -> None:
    k = run("fork 1\nfork 2 clone_parent newns")
    t = task(k, 3)
    assert t.ppid == 1 and t.pid == (3, 1) and 3 in k.snapshot().namespaces


def test_clone_parent_plants_a_zombie_under_the_grandparent() -> None:
    k = run("fork 1\nfork 2 clone_parent\nexit 3 code=7")
    t = task(k, 3)
    assert (t.ppid, t.state, t.exit_status) == (1, "zombie", 7 << 8)


# ------------------------------------------------------------------------------------ CLONE_NEWPID


def test_newpid_first_process_is_pid_1_reaper_and_unkillable() -> None:
    k = run("fork 1 newns")
    assert task(k, 2).pid == (2, 1)
    assert k.procs[2].ns.reaper is k.procs[2] and k.procs[2].unkillable
    assert 2 in k.snapshot().namespaces


def test_newpid_children_get_numbers_at_every_level() -> None:
    k = run("fork 1 newns\nfork 2\nfork 3 newns\nfork 4")
    assert task(k, 4).pid == (4, 3, 1) and task(k, 5).pid == (5, 4, 2)


def test_newpid_nesting_limit_32_then_enospc() -> None:
    # the restorer's namespace is level 1: 31 nested namespaces reach level 32, the next fails
    k = Kernel.fresh(base_level=1)
    parent = 1
    for _ in range(31):
        run(f"fork {parent} newns", k)
        parent = max(k.procs)
    assert k.procs[parent].ns.level + k.base_level == 32
    assert fail(k, f"fork {parent} newns") == "ENOSPC"
    run(f"fork {parent}", k)  # a plain fork at level 32 is fine


def test_newpid_nesting_limit_counts_from_the_real_level() -> None:
    assert fail(Kernel.fresh(base_level=32), "fork 1 newns") == "ENOSPC"
    run("fork 1 newns", Kernel.fresh(base_level=31))


# ---------------------------------------------------------------------------------------- threads


def test_thread_shares_group_and_takes_a_pid_number() -> None:
    k = run("fork 1\nthread 2\nthread 2 tid=50")
    t = task(k, 2)
    assert t.threads == ((3,), (50,))
    run("fork 1", k)
    assert 4 in k.procs  # the thread's 3 is taken


def test_thread_in_a_namespace_has_tids_at_every_level() -> None:
    k = run("fork 1 newns\nthread 2 tid=9")
    assert task(k, 2).threads == ((3, 9),)


def test_thread_tid_in_use_eexist() -> None:
    k = run("fork 1")
    assert fail(k, "thread 1 tid=2") == "EEXIST"


def test_thread_tid_freed_when_the_process_exits() -> None:
    k = run("fork 1\nthread 2 tid=40\nexit 2 code=0")
    assert task(k, 2).threads == ()
    run("fork 1 pid=40", k)
