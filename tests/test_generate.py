"""The generator: random histories the model accepts, trees that validate, replays that agree,
determinism, and features that really show (or stay away when turned off)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procforge import steps as S
from procforge import tree as T
from procforge.errors import InvalidInput
from procforge.generate import FEATURES, generate, parse_features
from procforge.kernel import Kernel, simulate


def same_tree(a: T.Tree, b: T.Tree) -> bool:
    ja, jb = a.to_json(), b.to_json()
    ja.pop("source", None)
    jb.pop("source", None)
    return ja == jb


@settings(max_examples=40, deadline=None)
@given(tasks=st.integers(1, 400), seed=st.integers(0, 2**32),
       features=st.sets(st.sampled_from(FEATURES)))
def test_generated_history_replays_without_failure_to_the_same_valid_tree(
        tasks: int, seed: int, features: set[str]) -> None:
    tree, history = generate(tasks, seed, features)  # raises if the model refused a step
    assert len(tree) == tasks
    T.from_json(tree.to_json())  # passes validation (schema and invariants)
    T.loads(tree.dumps())
    out = simulate(history)
    assert out.failure is None, f"step {out.failed_at}: {out.failure}"
    assert same_tree(out.kernel.snapshot(), tree)
    # a model built from the tree gives the tree back, in the file's order
    back = Kernel.from_tree(tree).snapshot()
    assert same_tree(back, tree) and list(back.tasks) == list(tree.tasks)
    # the history survives both step forms
    assert S.loads(S.dumps(history, "text")) == history
    assert S.loads(S.dumps(history, "json")) == history


def test_same_seed_same_history_and_tree() -> None:
    a = generate(500, 7)
    b = generate(500, 7)
    assert a[1] == b[1] and a[0] == b[0]
    c = generate(500, 8)
    assert c[1] != a[1]


def test_one_task_is_the_fresh_namespace() -> None:
    tree, history = generate(1, 0)
    assert history == [] and list(tree.tasks) == [1] and tree.namespaces == (1,)


def test_big_tree_is_valid_and_replays() -> None:
    tree, history = generate(20_000, 3)
    assert len(tree) == 20_000
    T.from_json(tree.to_json())
    assert same_tree(simulate(history).kernel.snapshot(), tree)


def _has(feature: str, tree: T.Tree, history: list[S.Step]) -> bool:  # noqa: C901 - a table
    tasks = list(tree)
    if feature == "sessions":
        return any(t.sid == t.id for t in tasks) and any(isinstance(s, S.Setsid) for s in history)
    if feature == "groups":
        return any(isinstance(s, S.Setpgid) for s in history) and \
            any(t.pgid not in (0, t.sid) for t in tasks)
    if feature == "dead_leaders":
        return any(t.pgid and t.pgid not in tree.tasks for t in tasks) or \
            any(t.sid and t.sid not in tree.tasks for t in tasks)
    if feature == "zombies":
        statuses = [t.exit_status for t in tasks if t.state == T.ZOMBIE]
        return any(s is not None and s & 0x7F for s in statuses) and \
            any(s is not None and s >> 8 for s in statuses)
    if feature == "subreapers":
        offs = any(isinstance(s, S.Subreaper) and not s.on for s in history)
        return offs and any(t.child_subreaper for t in tasks)
    if feature == "clone_parent":
        return any(isinstance(s, S.Fork) and s.clone_parent for s in history)
    if feature == "namespaces":
        return len(tree.namespaces) > 2 and max(t.level for t in tasks) >= 2
    if feature == "threads":
        return any(t.threads for t in tasks)
    if feature == "stopped":
        return any(t.state == T.STOPPED for t in tasks)
    if feature == "leader_exit":
        return any(t.leader_exited for t in tasks)
    raise AssertionError(feature)


@pytest.mark.parametrize("feature", FEATURES)
def test_each_feature_shows_in_a_tree_of_3000(feature: str) -> None:
    tree, history = generate(3000, 11, {feature})
    assert _has(feature, tree, history)


def test_all_features_show_together() -> None:
    tree, history = generate(5000, 5)
    for f in FEATURES:
        assert _has(f, tree, history), f


def test_no_features_means_a_plain_tree() -> None:
    tree, history = generate(2000, 4, set())
    assert all(t.state == T.ALIVE and not t.threads and not t.child_subreaper for t in tree)
    assert tree.namespaces == (1,) and all((t.pgid, t.sid) == (0, 0) for t in tree)
    assert any(isinstance(s, S.Exit) for s in history)  # exits and waits still happen


def test_mostly_kernel_chosen_pids_sometimes_explicit() -> None:
    _, history = generate(3000, 2)
    forks = [s for s in history if isinstance(s, S.Fork)]
    explicit = sum(1 for s in forks if s.pid is not None)
    assert 0 < explicit < len(forks) / 10


def test_feature_list_parsing() -> None:
    assert parse_features(None) == frozenset(FEATURES)
    assert parse_features("all,-threads") == frozenset(FEATURES) - {"threads"}
    assert parse_features("none,zombies, stopped") == {"zombies", "stopped"}
    assert parse_features("dead-leaders") == {"dead_leaders"}
    with pytest.raises(InvalidInput, match="unknown feature 'colour'"):
        parse_features("colour")


@pytest.mark.parametrize("tasks", [0, -3, 4_000_001])
def test_task_count_out_of_range_is_invalid_input(tasks: int) -> None:
    with pytest.raises(InvalidInput, match="--tasks"):
        generate(tasks, 0)
