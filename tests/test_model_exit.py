"""Kernel model, §1 (namespace init death) and §4-§6 of linux-process-semantics.md: exit,
reparenting (`find_new_reaper`), subreapers (prctl), orphaned groups (`kill_orphaned_pgrp`),
zombies, auto-reap (`do_notify_parent`), wait, and the leader thread's exit."""

from __future__ import annotations

from modelkit import fail, run

from procforge.kernel import Kernel

SIGHUP, SIGKILL = 1, 9


def t(k: Kernel, pid: int):  # noqa: ANN201 - a tree Task
    return k.snapshot().tasks[pid]


# ------------------------------------------------------------------------------- exit and zombies


def test_exit_code_makes_a_zombie_with_wait_status_code_shifted() -> None:
    k = run("fork 1\nexit 2 code=200")
    assert (t(k, 2).state, t(k, 2).exit_status) == ("zombie", 200 << 8)


def test_exit_by_signal_with_core_bit() -> None:
    k = run("fork 1\nfork 1\nexit 2 signal=9\nexit 3 signal=11+core")
    assert t(k, 2).exit_status == 9 and t(k, 3).exit_status == 11 | 0x80


def test_zombie_keeps_ppid_pgid_sid() -> None:
    k = run("fork 1\nsetsid 2\nfork 2\nexit 3 code=3")
    assert (t(k, 3).ppid, t(k, 3).pgid, t(k, 3).sid) == (2, 2, 2)


def test_exit_of_zombie_is_not_executable() -> None:
    k = run("fork 1\nexit 2 code=0")
    assert fail(k, "exit 2 code=0") is None


def test_stopped_task_can_be_killed_by_signal_not_exit_by_code() -> None:
    k = run("fork 1\nstop 2")
    assert fail(k, "exit 2 code=0") is None
    run("exit 2 signal=9", k)
    assert t(k, 2).exit_status == SIGKILL


def test_stop_of_zombie_is_not_executable() -> None:
    k = run("fork 1\nexit 2 code=0")
    assert fail(k, "stop 2") is None


# ------------------------------------------------------------------------------------------- wait


def test_wait_reaps_zombie_child() -> None:
    k = run("fork 1\nexit 2 code=0\nwait 1 2")
    assert 2 not in k.procs


def test_wait_echild_for_non_child() -> None:
    k = run("fork 1\nfork 2\nexit 3 code=0")
    assert fail(k, "wait 1 3") == "ECHILD"
    assert fail(k, "wait 1 99") == "ECHILD"


def test_wait_for_live_child_would_block() -> None:
    k = run("fork 1")
    assert fail(k, "wait 1 2") is None


# ---------------------------------------------------------------------------------------- auto-reap


def test_autoreap_when_parent_ignores_sigchld() -> None:
    k = run("fork 1\nsigchld 1 ignore\nfork 1\nexit 3 code=0")
    assert 3 not in k.procs
    assert fail(k, "wait 1 3") == "ECHILD"


def test_sigchld_ignore_does_not_reap_existing_zombies() -> None:
    k = run("fork 1\nexit 2 code=0\nsigchld 1 ignore")
    assert t(k, 2).state == "zombie"


def test_autoreap_under_ignoring_grandparent_for_clone_parent_child() -> None:
    k = run("fork 1\nsigchld 1 ignore\nsigchld 2 default\nfork 2 clone_parent\nexit 3 code=0")
    assert 3 not in k.procs


def test_sigchld_default_again_keeps_zombies() -> None:
    k = run("fork 1\nsigchld 1 ignore\nsigchld 1 default\nexit 2 code=0")
    assert t(k, 2).state == "zombie"


# -------------------------------------------------------------------------------------- reparenting


def test_orphans_go_to_namespace_init_without_subreaper() -> None:
    k = run("fork 1\nfork 2\nfork 3\nexit 3 code=0")
    assert t(k, 4).ppid == 1


def test_children_stay_when_leader_thread_exits_with_live_threads() -> None:
    k = run("fork 1\nthread 2\nfork 2\nexit_leader_thread 2")
    assert t(k, 4).ppid == 2 and t(k, 2).leader_exited and t(k, 2).state == "alive"


def test_leader_with_live_threads_is_not_waitable() -> None:
    k = run("fork 1\nthread 2\nexit_leader_thread 2")
    assert fail(k, "wait 1 2") is None


def test_exit_leader_thread_needs_another_thread_and_a_live_leader() -> None:
    k = run("fork 1")
    assert fail(k, "exit_leader_thread 2") is None
    run("thread 2\nexit_leader_thread 2", k)
    assert fail(k, "exit_leader_thread 2") is None


def test_group_exit_after_leader_thread_exit_makes_a_real_zombie() -> None:
    k = run("fork 1\nthread 2\nexit_leader_thread 2\nexit 2 code=5")
    assert (t(k, 2).state, t(k, 2).threads, t(k, 2).leader_exited) == ("zombie", (), False)


def test_reparent_to_subreaper_ancestor() -> None:
    k = run("fork 1\nsubreaper 2 on\nfork 2\nfork 3\nexit 3 code=0")
    assert t(k, 4).ppid == 2


def test_reparent_nearest_subreaper_wins() -> None:
    # S1(2) -> S2(3) -> M(4) -> A(5) -> B(6): A exits, B goes to S2; S2 exits, B goes to S1
    k = run("fork 1\nsubreaper 2 on\nfork 2\nsubreaper 3 on\nfork 3\nfork 4\nfork 5\nexit 5 code=0")
    assert t(k, 6).ppid == 3
    run("exit 3 code=0", k)
    assert t(k, 6).ppid == 2 and t(k, 4).ppid == 2


def test_subreaper_set_after_descendants_exist_still_adopts() -> None:
    k = run("fork 1\nfork 2\nfork 3\nfork 4\nsubreaper 2 on\nexit 4 code=0")
    assert t(k, 5).ppid == 2


def test_subreaper_unset_orphans_go_to_init() -> None:
    k = run("fork 1\nsubreaper 2 on\nfork 2\nfork 3\nsubreaper 2 off\nexit 3 code=0")
    assert t(k, 4).ppid == 1


def test_subreaper_stale_hint_only_continues_the_walk() -> None:
    # 3 was a subreaper (so 4 and 5 have the hint), then unset; 2 still is: the walk passes 3
    k = run("fork 1\nsubreaper 2 on\nfork 2\nsubreaper 3 on\nfork 3\nfork 4\n"
            "subreaper 3 off\nexit 4 code=0")
    assert t(k, 5).ppid == 2


def test_subreaper_not_inherited_by_fork() -> None:
    k = run("fork 1\nsubreaper 2 on\nfork 2")
    assert t(k, 3).child_subreaper is False


def test_subreaper_walk_ignores_the_exiting_process_own_flag() -> None:
    k = run("fork 1\nfork 2\nsubreaper 3 on\nfork 3\nfork 4\nexit 3 code=0")
    assert t(k, 4).ppid == 1  # 3's own flag does not keep its children


def test_subreaper_walk_stops_at_namespace_level_boundary() -> None:
    k = run("fork 1\nsubreaper 2 on\nfork 2 newns\nfork 3\nfork 4\nexit 4 code=0")
    assert t(k, 5).ppid == 3  # the inner init, not the outer subreaper


def test_subreaper_propagation_skips_namespace_inits_subtree() -> None:
    k = run("fork 1\nfork 2 newns\nfork 3\nsubreaper 2 on")
    assert k.procs[3].has_subreaper is False and k.procs[4].has_subreaper is False


def test_subreaper_with_exited_leader_thread_still_adopts() -> None:
    k = run("fork 1\nsubreaper 2 on\nthread 2\nfork 2\nfork 4\nexit_leader_thread 2\nexit 4 code=0")
    assert t(k, 5).ppid == 2


def test_subreaper_in_nested_namespace_adopts_its_orphans() -> None:
    k = run("fork 1 newns\nfork 2\nsubreaper 3 on\nfork 3\nfork 4\nexit 4 code=0")
    assert t(k, 5).ppid == 3


def test_reparented_zombie_stays_under_new_parent_until_waited() -> None:
    k = run("fork 1\nfork 2\nexit 3 code=4\nexit 2 code=0")
    assert (t(k, 3).ppid, t(k, 3).state) == (1, "zombie")
    run("wait 1 3", k)
    assert 3 not in k.procs


def test_reparented_zombie_is_released_at_once_by_ignoring_subreaper() -> None:
    k = run("fork 1\nsubreaper 2 on\nfork 2\nsigchld 2 ignore\nsigchld 3 default\nfork 3\n"
            "exit 4 code=0\nexit 3 code=0")
    assert 4 not in k.procs and 3 not in k.procs


def test_reparented_zombie_autoreaped_by_ignoring_init() -> None:
    k = run("fork 1 newns\nsigchld 2 ignore\nfork 2\nsigchld 3 default\nfork 3\nexit 4 code=0\n"
            "exit 3 code=0")
    assert 4 not in k.procs and 3 not in k.procs and 2 in k.procs


def test_reparented_children_keep_their_order_after_the_reapers_own() -> None:
    k = run("fork 1\nfork 2\nfork 2\nfork 1\nexit 2 code=0")
    assert list(k.procs[1].children) == [2, 5, 3, 4]


# ------------------------------------------------------------------------------- orphaned groups


ORPHAN_SETUP = "fork 1\nsetsid 2\nfork 2\nsetpgid 2 3 3\nfork 3\nstop 4\n"  # P=2, C=3, D=4


def test_orphaned_group_with_stopped_member_gets_sighup_on_reparent() -> None:
    # P exits; C goes to init (another session): group 3 is orphaned and holds stopped D.
    # Measured on 6.18 (test_model_kernel.py): stopped D dies of SIGHUP, running C only gets
    # SIGCONT and lives on (the reference §4 says both die)
    k = run(ORPHAN_SETUP + "exit 2 code=0")
    assert (t(k, 4).state, t(k, 4).exit_status) == ("zombie", SIGHUP)
    assert (t(k, 3).state, t(k, 3).ppid) == ("alive", 1)


def test_exit_of_groups_last_outside_link_sighups_stopped_group() -> None:
    k = run(ORPHAN_SETUP + "exit 3 code=0")
    assert t(k, 4).state == "zombie" and t(k, 4).exit_status == SIGHUP
    assert t(k, 3).exit_status == 0


def test_orphaned_group_without_stopped_members_is_left_alone() -> None:
    k = run("fork 1\nsetsid 2\nfork 2\nsetpgid 2 3 3\nfork 3\nexit 2 code=0")
    assert t(k, 3).state == "alive" and t(k, 4).state == "alive"


def test_group_with_another_outside_link_is_not_orphaned() -> None:
    # 5 is also in group 3 with its parent 2 outside it: group 3 keeps a link after 3 exits
    k = run(ORPHAN_SETUP + "fork 2\nsetpgid 2 5 3\nexit 3 code=0")
    assert t(k, 4).state == "stopped" and t(k, 5).state == "alive"


def test_zombie_member_is_not_an_outside_link() -> None:
    k = run(ORPHAN_SETUP + "fork 2\nsetpgid 2 5 3\nexit 5 code=0\nexit 3 code=0")
    assert t(k, 4).exit_status == SIGHUP


def test_parent_in_another_session_is_not_a_link() -> None:
    # group 3 in session 2; its only outside parent is init (env session): stopping is harmless,
    # but making 2 exit changes nothing because 2 was never the link of group 5
    k = run("fork 1\nsetsid 2\nfork 2\nsetsid 3\nfork 3\nsetpgid 3 4 4\nfork 4\nstop 5\n"
            "fork 1\nexit 2 code=0")
    assert t(k, 5).state == "stopped"  # 3 is the link (same session 3), untouched


def test_orphaned_namespace_init_ignores_sighup_and_is_continued() -> None:
    # stopped ns init 5 in the orphaned group 3 survives, continued; stopped 4 dies
    k = run("fork 1\nsetsid 2\nfork 2\nsetpgid 2 3 3\nfork 3\nfork 3 newns\nstop 5\nstop 4\n"
            "exit 2 code=0")
    assert t(k, 5).state == "alive" and t(k, 4).exit_status == SIGHUP
    assert t(k, 3).state == "alive"


def test_sighup_victims_are_autoreaped_by_ignoring_parent() -> None:
    # Y(5) is in group 3 of session 2, but its parent X(4) left for session 4 and ignores SIGCHLD:
    # when P(2) exits, group 3 {C, Y} is orphaned; stopped Y dies of SIGHUP and X releases it
    k = run("fork 1\nsetsid 2\nfork 2\nsetpgid 2 3 3\nfork 2\nfork 4\nsetsid 4\nsetpgid 5 5 3\n"
            "sigchld 4 ignore\nstop 5\nexit 2 code=0")
    assert 5 not in k.procs and t(k, 3).state == "alive"


# ------------------------------------------------------------------------------ namespace death


def test_namespace_init_exit_kills_and_reaps_everything_inside() -> None:
    k = run("fork 1 newns\nfork 2\nfork 3\nexit 4 code=1\nthread 3\nexit 2 code=5")
    assert sorted(k.procs) == [1, 2]
    assert (t(k, 2).state, t(k, 2).exit_status) == ("zombie", 5 << 8)


def test_namespace_init_death_kills_nested_namespaces() -> None:
    k = run("fork 1 newns\nfork 2 newns\nfork 3\nfork 3 newns\nexit 2 code=0")
    assert sorted(k.procs) == [1, 2]


def test_namespace_death_frees_its_numbers() -> None:
    k = run("fork 1 newns\nfork 2\nexit 2 code=0\nwait 1 2\nfork 1 pid=3\nfork 1 pid=2/1 newns")
    assert t(k, 2).pid == (2, 1)


def test_namespace_init_killed_by_signal_from_outside() -> None:
    k = run("fork 1 newns\nfork 2\nexit 2 signal=9")
    assert sorted(k.procs) == [1, 2] and t(k, 2).exit_status == SIGKILL


def test_namespace_survives_when_init_leader_thread_exits_with_live_thread() -> None:
    k = run("fork 1 newns\nthread 2\nfork 2\nfork 4\nexit_leader_thread 2\nexit 4 code=0")
    assert t(k, 5).ppid == 2 and t(k, 2).state == "alive"
    run("fork 5", k)  # forks still work: PIDNS_ADDING is set


def test_namespace_init_exit_refused_while_outside_member_holds_inner_group() -> None:
    # 1 joins group 3 (made inside the namespace of 2): zap_pid_ns_processes would wait for ever
    k = run("fork 1 newns\nfork 2\nsetpgid 2 3 3")
    k2 = run("fork 1\nsetpgid 1 2 2\nfork 2 newns\nfork 3\nsetpgid 3 4 4\nsetpgid 1 2 4")
    assert fail(k2, "exit 3 code=0") is None
    run("exit 2 code=0", k)


def test_top_namespace_init_exit_kills_everything() -> None:
    k = run("fork 1\nfork 2\nexit 1 code=0")
    assert sorted(k.procs) == [1] and t(k, 1).state == "zombie"


def test_global_init_parent_is_not_an_outside_link() -> None:
    # is_global_init(real_parent). Group 2 of session 1 keeps stopped 3; when 2 exits, 3 goes to
    # pid 1 (group 1, session 1). At base level 1 pid 1 is a namespace init, a real link: no
    # SIGHUP. At base level 0 it is the global init, which does not count: SIGHUP.
    text = "setsid 1\nfork 1\nsetpgid 1 2 2\nfork 2\nstop 3\nexit 2 code=0"
    k0, k1 = Kernel.fresh(base_level=0), Kernel.fresh(base_level=1)
    run(text, k0)
    run(text, k1)
    assert t(k0, 3).exit_status == SIGHUP
    assert t(k1, 3).state == "stopped" and t(k1, 3).ppid == 1


def test_clone_parent_from_the_trees_root_is_not_executable() -> None:
    from procforge.tree import Task, Tree

    tree = Tree(tasks={5: Task(pid=(5,), ppid=0, pgid=0, sid=0)})
    k = Kernel.from_tree(tree)
    assert fail(k, "fork 5 clone_parent") is None
