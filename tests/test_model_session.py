"""Kernel model, §2-§3 of linux-process-semantics.md: setsid (`ksys_setsid`) and setpgid
(`sys_setpgid`), with each errno and the order of the checks."""

from __future__ import annotations

from modelkit import fail, run

from procforge import steps as S
from procforge.kernel import Kernel


def ids(k: Kernel, pid: int) -> tuple[int, int, int]:
    t = k.snapshot().tasks[pid]
    return t.ppid, t.pgid, t.sid


# ------------------------------------------------------------------------------------------ setsid


def test_setsid_makes_session_and_group_named_by_caller() -> None:
    k = run("fork 1\nsetsid 2")
    assert ids(k, 2) == (1, 2, 2) and k.procs[2].session_leader


def test_setsid_eperm_when_already_session_leader() -> None:
    k = run("fork 1\nsetsid 2")
    assert fail(k, "setsid 2") == "EPERM"


def test_setsid_eperm_when_group_leader() -> None:
    k = run("fork 1\nsetpgid 2 2 0")
    assert fail(k, "setsid 2") == "EPERM"


def test_setsid_eperm_when_left_own_group_but_members_remain() -> None:
    # 2 leads group 2 and forks 3 and 4 into it; 4 makes group 4 and 2 joins it: 3 keeps group 2
    k = run("fork 1\nsetpgid 2 2 0\nfork 2\nfork 2\nsetpgid 2 4 4\nsetpgid 2 2 4")
    assert ids(k, 2)[1] == 4 and ids(k, 3)[1] == 2
    assert fail(k, "setsid 2") == "EPERM"


def test_setsid_eperm_when_zombie_keeps_group() -> None:
    k = run("fork 1\nsetpgid 2 2 0\nfork 2\nfork 2\nsetpgid 2 4 4\nsetpgid 2 2 4\nexit 3 code=0")
    assert k.snapshot().tasks[3].state == "zombie"
    assert fail(k, "setsid 2") == "EPERM"
    run("wait 2 3\nsetsid 2", k)  # once the zombie is reaped the name is free
    assert ids(k, 2) == (1, 2, 2)


def test_setsid_session_leader_check_comes_first() -> None:
    k = run("fork 1\nsetsid 2")  # 2 is both session and group leader
    f = k.apply(S.Setsid(2))
    assert f is not None and f.errno == "EPERM" and "already leads session" in f.reason


def test_setsid_by_a_process_whose_leader_thread_exited_acts_on_the_process() -> None:
    k = run("fork 1\nthread 2\nexit_leader_thread 2\nsetsid 2")
    assert ids(k, 2) == (1, 2, 2)


# ----------------------------------------------------------------------------------------- setpgid


def test_setpgid_zero_means_self_and_target() -> None:
    k = run("fork 1\nsetpgid 2 0 0")
    assert ids(k, 2)[1] == 2


def test_setpgid_einval_for_negative_pgid_first() -> None:
    k = run("fork 1")
    assert fail(k, S.Setpgid(2, 99, -1)) == "EINVAL"  # before ESRCH for the missing target


def test_setpgid_esrch_when_target_does_not_exist() -> None:
    k = run("fork 1")
    assert fail(k, "setpgid 2 99 0") == "ESRCH"


def test_setpgid_esrch_when_target_is_a_reaped_leaders_number() -> None:
    k = run("fork 1\nfork 2\nsetpgid 2 3 3\nfork 3\nexit 3 code=0\nwait 2 3")
    assert fail(k, "setpgid 2 3 0") == "ESRCH"


def test_setpgid_esrch_when_target_is_not_visible_in_callers_namespace() -> None:
    k = run("fork 1 newns\nfork 1")  # 3 is outside 2's namespace
    assert fail(k, "setpgid 2 3 0") == "ESRCH"


def test_setpgid_einval_when_target_is_a_thread() -> None:
    k = run("fork 1\nthread 2 tid=10")
    assert fail(k, "setpgid 2 10 0") == "EINVAL"
    assert fail(k, "setpgid 1 10 0") == "EINVAL"  # EINVAL comes before the child check


def test_setpgid_eperm_when_child_is_in_another_session() -> None:
    k = run("fork 1\nsetsid 2")
    assert fail(k, "setpgid 1 2 2") == "EPERM"


def test_setpgid_esrch_for_parent_sibling_or_grandchild() -> None:
    k = run("fork 1\nfork 1\nfork 2")
    assert fail(k, "setpgid 2 1 0") == "ESRCH"  # its parent
    assert fail(k, "setpgid 2 3 0") == "ESRCH"  # its sibling
    assert fail(k, "setpgid 1 4 0") == "ESRCH"  # its grandchild


def test_setpgid_esrch_not_child_before_session_leader_eperm() -> None:
    k = run("fork 1\nfork 1\nsetsid 3")
    assert fail(k, "setpgid 2 3 0") == "ESRCH"


def test_setpgid_eperm_when_target_is_session_leader() -> None:
    k = run("fork 1\nsetsid 2")
    assert fail(k, "setpgid 2 0 0") == "EPERM"  # setpgid(0, 0) by a session leader
    assert fail(k, "setpgid 2 2 2") == "EPERM"


def test_setpgid_eperm_when_pgid_is_a_live_pid_that_names_no_group() -> None:
    k = run("fork 1\nfork 1")
    assert fail(k, "setpgid 1 2 3") == "EPERM"


def test_setpgid_eperm_when_pgid_does_not_exist() -> None:
    k = run("fork 1")
    assert fail(k, "setpgid 1 2 77") == "EPERM"


def test_setpgid_eperm_when_group_is_in_another_session() -> None:
    k = run("fork 1\nfork 1\nsetsid 3")
    assert fail(k, "setpgid 1 2 3") == "EPERM"


def test_setpgid_eperm_when_group_is_not_visible_in_callers_namespace() -> None:
    # the namespace init inherits its parent's group 2, whose id has no number inside
    k = run("fork 1\nsetpgid 2 2 0\nfork 2 newns\nfork 3")
    assert fail(k, "setpgid 3 4 2") == "EPERM"


def test_setpgid_zombie_member_keeps_group_joinable() -> None:
    # group 3: leader 3 reaped, only member an unreaped zombie 4 (a child of 1 by CLONE_PARENT)
    k = run("fork 1\nsetpgid 1 2 2\nfork 1\nsetpgid 1 3 3\nfork 3 clone_parent\nexit 4 code=0\n"
            "exit 3 code=0\nwait 1 3")
    assert k.snapshot().tasks[4].pgid == 3 and 3 not in k.procs
    run("setpgid 1 2 3", k)
    assert ids(k, 2)[1] == 3


def test_setpgid_dead_leader_with_live_members_is_joinable() -> None:
    k = run("fork 1\nfork 1\nsetpgid 1 3 3\nfork 3 clone_parent\nexit 3 code=0\nwait 1 3\n"
            "setpgid 1 2 3")
    assert ids(k, 2)[1] == 3 and ids(k, 4)[1] == 3


def test_setpgid_moves_a_zombie_child() -> None:
    k = run("fork 1\nfork 1\nsetpgid 1 2 2\nexit 3 code=0\nsetpgid 1 3 2")
    assert ids(k, 3)[1] == 2
    run("setpgid 1 3 3", k)
    assert ids(k, 3)[1] == 3


def test_setpgid_leader_may_leave_its_group_which_persists() -> None:
    k = run("fork 1\nsetpgid 2 0 0\nfork 2\nfork 2\nsetpgid 2 4 4\nsetpgid 2 2 4")
    assert ids(k, 2)[1] == 4 and ids(k, 3)[1] == 2


def test_setpgid_by_parent_into_its_own_group() -> None:
    k = run("fork 1\nsetsid 2\nfork 2\nsetpgid 2 3 3\nsetpgid 2 3 2")
    assert ids(k, 3) == (2, 2, 2)


def test_setpgid_child_in_deeper_namespace_is_visible_to_parent() -> None:
    k = run("fork 1\nsetsid 2\nfork 2 newns\nsetpgid 2 3 3")
    assert ids(k, 3) == (2, 3, 2)
