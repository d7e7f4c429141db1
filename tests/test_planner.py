"""The planner: plans verify on the model, unreachable trees are explained, the search agrees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procforge import planner
from procforge import steps as S
from procforge import tree as T
from procforge.cli import main
from procforge.generate import FEATURES, generate
from procforge.planner import exhaustive as E

CRIU = Path(__file__).resolve().parents[2] / "shared" / "criu-images"


def tree_of(tasks: list[dict], namespaces=(1,), external=()) -> T.Tree:
    full = []
    for t in tasks:
        d = {"state": "alive", "child_subreaper": False, **t}
        d["pid"] = d["pid"] if isinstance(d["pid"], list) else [d["pid"]]
        full.append(d)
    return T.from_json({"format": T.FORMAT, "namespaces": [{"init": n} for n in namespaces],
                        "external": list(external), "tasks": full})


def assert_plans(tree: T.Tree) -> planner.Plan:
    p = planner.plan(tree)
    r = planner.verify(tree, p.steps)
    assert r.ok, (r.failure, r.differences)
    return p


# ------------------------------------------------------------------ the classes where CRIU gives up

def test_orphan_of_dead_session_adopted_by_subreaper_below_root():
    # 2 is a subreaper; session 5's leader died; its member 6 now hangs under 2
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": 2, "ppid": 1, "pgid": 1, "sid": 1, "child_subreaper": True},
        {"pid": 6, "ppid": 2, "pgid": 5, "sid": 5},
        {"pid": 7, "ppid": 6, "pgid": 5, "sid": 5},
    ])
    p = assert_plans(t)
    assert p.stats()["helpers"] == p.stats()["helper_lower_bound"] == 1


def test_orphan_whose_session_leader_lives_in_another_branch():
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": 2, "ppid": 1, "pgid": 1, "sid": 1, "child_subreaper": True},
        {"pid": 3, "ppid": 1, "pgid": 3, "sid": 3},
        {"pid": 4, "ppid": 2, "pgid": 3, "sid": 3},
    ])
    assert_plans(t)


def test_subreaper_holding_orphans_of_several_sessions_flag_unset_later():
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": 2, "ppid": 1, "pgid": 1, "sid": 1, "child_subreaper": False},
        {"pid": 4, "ppid": 2, "pgid": 4, "sid": 3},
        {"pid": 5, "ppid": 2, "pgid": 7, "sid": 6},
        {"pid": 8, "ppid": 2, "pgid": 8, "sid": 8},
    ])
    assert_plans(t)


def test_clone_parent_sibling_in_another_session_and_leader_left_its_group():
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": 2, "ppid": 1, "pgid": 2, "sid": 2},
        {"pid": 3, "ppid": 1, "pgid": 3, "sid": 2},   # sibling in 2's session: CLONE_PARENT
        {"pid": 4, "ppid": 3, "pgid": 2, "sid": 2},   # 3 ... and 5 left group 3 (5 leads it)
        {"pid": 5, "ppid": 3, "pgid": 2, "sid": 2},
        {"pid": 6, "ppid": 5, "pgid": 5, "sid": 2},
    ])
    assert_plans(t)


def test_dead_group_leader_with_members_in_different_branches():
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": 2, "ppid": 1, "pgid": 1, "sid": 1},
        {"pid": 3, "ppid": 1, "pgid": 1, "sid": 1},
        {"pid": 4, "ppid": 2, "pgid": 9, "sid": 1},
        {"pid": 5, "ppid": 3, "pgid": 9, "sid": 1},
    ])
    p = assert_plans(t)
    assert p.stats()["helper_lower_bound"] == 1


def test_nested_namespaces_zombies_signals_threads_leader_exit_stopped():
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": [2, 1], "ppid": 1, "pgid": 1, "sid": 1, "threads": [[3, 2]]},
        {"pid": [4, 3, 1], "ppid": 2, "pgid": 1, "sid": 1},
        {"pid": [5, 4, 2], "ppid": 4, "pgid": 5, "sid": 5, "threads": [[6, 5, 3]], "leader_exited": True},
        {"pid": [7, 6, 4], "ppid": 4, "pgid": 5, "sid": 5, "state": "stopped"},
        {"pid": [8, 7, 5], "ppid": 5, "pgid": 5, "sid": 5, "state": "zombie", "exit_status": 200 << 8},
        {"pid": [9, 8, 6], "ppid": 5, "pgid": 5, "sid": 5, "state": "zombie", "exit_status": 9},
        {"pid": [10, 9, 7], "ppid": 5, "pgid": 5, "sid": 5, "state": "zombie", "exit_status": 0x80 | 11},
    ], namespaces=(1, 2, 4))
    assert_plans(t)


@pytest.mark.parametrize("folder", sorted(p.name for p in CRIU.iterdir() if p.is_dir()) if CRIU.exists() else [])
def test_criu_fixture_trees_plan(folder):
    data = json.loads((CRIU / folder / "expected.json").read_text())
    tasks = [{"pid": t["pid"], "ppid": t["ppid"], "pgid": t["pgid"], "sid": t["sid"], "state": t["state"],
              **({"exit_status": t["exit_status"]} if t["exit_status"] is not None else {}),
              "threads": [[x] for x in t["threads"] if x != t["pid"]] if t["state"] != "zombie" else [],
              "child_subreaper": t["child_subreaper"]} for t in data["tasks"]]
    assert_plans(tree_of(tasks))


# -------------------------------------------------------------------------------- unreachable trees

def test_thread_numbers_clash_at_inner_levels_is_invalid():
    with pytest.raises(T.TreeError, match="task 7"):
        tree_of([
            {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
            {"pid": [2, 1], "ppid": 1, "pgid": 1, "sid": 1, "threads": [[3, 2]]},
            {"pid": [7, 2], "ppid": 2, "pgid": 1, "sid": 1},
        ], namespaces=(1, 2))


def test_unreachable_tree_is_explained_naming_tasks():
    # group 1 exists only if init 1 made it, and then 1 can never return to the restorer's group
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 0, "sid": 0},
        {"pid": 2, "ppid": 1, "pgid": 0, "sid": 0},
        {"pid": 3, "ppid": 1, "pgid": 1, "sid": 0},
    ])
    v = planner.check(t)
    assert not v.reachable
    assert "task 1" in v.reason and "restorer's group" in v.reason
    with pytest.raises(planner.Unreachable):
        planner.plan(t)


def test_child_in_a_session_whose_leader_lives_in_another_branch():
    # 4 sits under 2 in session 3 whose leader hangs under 1: 3 makes 2 (CLONE_PARENT) in session 3,
    # 2 makes 4 there, then starts its own session; no helper at all
    t = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
        {"pid": 2, "ppid": 1, "pgid": 2, "sid": 2},
        {"pid": 3, "ppid": 1, "pgid": 3, "sid": 3},
        {"pid": 4, "ppid": 2, "pgid": 3, "sid": 3},
    ])
    p = assert_plans(t)
    assert p.stats()["helpers"] == 0
    assert S.Fork(3, (2,), clone_parent=True) in p.steps


def test_check_and_plan_commands(tmp_path):
    good = tree_of([{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}, {"pid": 2, "ppid": 1, "pgid": 1, "sid": 1}])
    bad = tree_of([
        {"pid": 1, "ppid": 0, "pgid": 0, "sid": 0}, {"pid": 2, "ppid": 1, "pgid": 0, "sid": 0},
        {"pid": 3, "ppid": 1, "pgid": 1, "sid": 0},
    ])
    (tmp_path / "good.json").write_text(good.dumps())
    (tmp_path / "bad.json").write_text(bad.dumps())
    r = CliRunner()
    assert r.invoke(main, ["check", str(tmp_path / "good.json")]).exit_code == 0
    out = r.invoke(main, ["check", str(tmp_path / "bad.json")])
    assert out.exit_code == 1 and "unreachable" in out.output
    res = r.invoke(main, ["plan", str(tmp_path / "good.json"), "-o", str(tmp_path / "p.txt"), "--stats"])
    assert res.exit_code == 0, res.output
    assert S.load(str(tmp_path / "p.txt")) == [S.Setsid(1), S.Fork(1, (2,))]
    v = r.invoke(main, ["verify", str(tmp_path / "good.json"), str(tmp_path / "p.txt")])
    assert v.exit_code == 0, v.output
    (tmp_path / "short.txt").write_text("setsid 1\n")
    v = r.invoke(main, ["verify", str(tmp_path / "good.json"), str(tmp_path / "short.txt")])
    assert v.exit_code == 1 and "task 2: missing" in v.output
    dot = r.invoke(main, ["plan", str(tmp_path / "good.json"), "--format", "dot"])
    assert dot.output.startswith("digraph") and "s0 -> s1" in dot.output
    assert r.invoke(main, ["plan", str(tmp_path / "bad.json")]).exit_code == 1
    (tmp_path / "junk.json").write_text("{")
    assert r.invoke(main, ["check", str(tmp_path / "junk.json")]).exit_code == 2


# ------------------------------------------------------------------------- completeness, three ways

def test_random_corpus_every_plan_verifies_and_never_traps_an_init():
    """Part of the 100,000-tree corpus (`procforge corpus` runs all of it). No step may put a namespace
    init in a group named after a pid of its own namespace: such an init can never die, and a
    restore that fails or is removed at that moment would leave it stuck in the kernel for good."""
    from procforge.fuzz import traps_an_init

    failures = []
    for seed in range(300):
        n = 2 + seed % 59
        tree, _ = generate(n, seed, set(FEATURES))
        try:
            p = assert_plans(tree)
        except (planner.Unreachable, AssertionError) as e:
            failures.append((n, seed, str(e)[:100]))
            continue
        k = planner.start_state(tree)
        for step in p.steps:
            assert not traps_an_init(k, step), (seed, S.format_step(step))
            k.apply(step)
    assert failures == []


# derandomized: the same 60 examples every run (the random corpus above and `procforge corpus` cover
# breadth; a planner gap found at random would make CI flaky rather than informative)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_generated_trees_plan_and_verify(n, seed):
    tree, _ = generate(n, seed, set(FEATURES))
    assert_plans(tree)


def test_exhaustive_search_and_planner_agree_on_small_pid_range():
    """Every tree of up to 3 tasks on pids 1..3 (helpers may use one more pid): reachable iff planned."""
    reach = E.reachable_shapes(tree_pids=3, max_tasks=3, extra_pids=1)
    assert len(reach) > 100
    for shape in reach:
        assert planner.check(E.to_tree(shape)).reachable, shape
    unreachable = 0
    for shape in E.candidate_shapes(3, 3):
        if shape not in reach:
            unreachable += 1
            assert not planner.check(E.to_tree(shape)).reachable, shape
    assert unreachable > 50


def test_subtree_root_that_is_no_init_plans_for_restore_into_an_existing_namespace():
    t = T.from_json({"format": T.FORMAT, "tasks": [
        {"pid": [500], "ppid": 0, "pgid": 0, "sid": 0, "state": "alive"},
        {"pid": [501], "ppid": 500, "pgid": 501, "sid": 501, "state": "alive"},
        {"pid": [502], "ppid": 500, "pgid": 0, "sid": 0, "state": "zombie", "exit_status": 256},
    ]})
    p = assert_plans(t)
    assert p.steps[0] == S.Fork(500, (501,))


def test_restore_refuses_a_tree_that_traps_its_init_before_creating_anything():
    # init 1 in group 2 (a pid of its own namespace): reachable, but the kernel could never remove it
    from procforge.engine.restore import restore
    from procforge.errors import InvalidInput
    from procforge.planner.build import trapped_inits

    t = tree_of([{"pid": 1, "ppid": 0, "pgid": 2, "sid": 0}, {"pid": 2, "ppid": 1, "pgid": 2, "sid": 0}])
    p = assert_plans(t)
    k = planner.start_state(t)
    assert k.run(p.steps) is None and trapped_inits(k) == ["init 1 is in group 2, a pid of its own namespace"]
    with pytest.raises(InvalidInput, match="could never remove"):
        restore(t)
