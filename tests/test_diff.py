"""procforge.diff and `procforge diff`: exact differences, wildcards, and shape equality up to a
renaming of pids (checked on generated trees under random renamings)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from procforge.cli import main
from procforge.diff import Difference, diff, shape_diff
from procforge.generate import generate
from procforge.invariants import check_tree
from procforge.tree import ZOMBIE, Task, Tree


def _tree(*tasks: Task, namespaces: tuple[int, ...] = (1,), external: frozenset[int] = frozenset()
          ) -> Tree:
    return Tree({t.id: t for t in tasks}, namespaces=namespaces, external=external)


BASE = _tree(
    Task((1,), 0, 1, 1),
    Task((2,), 1, 2, 2, threads=((3,), (4,))),
    Task((5,), 2, 2, 2, ZOMBIE, 7 << 8, child_subreaper=False),
    Task((6,), 1, 1, 1, child_subreaper=True, comm="db"),
)


def _rename(tree: Tree, rng: random.Random) -> Tree:
    """The same tree under a random renaming of top-level numbers (pid 1 of a root init kept)."""
    ids = {x for t in tree for x in (t.id, t.ppid, t.pgid, t.sid, *(th[0] for th in t.threads))}
    ids |= set(tree.external)
    ids -= {0}
    fixed = {1} if 1 in tree.namespaces else set()
    pool = rng.sample(range(2, 10 * len(ids) + 100), len(ids))
    m = {x: (x if x in fixed else pool.pop()) for x in sorted(ids)}
    m[0] = 0
    tasks = [replace(t, pid=(m[t.id], *t.pid[1:]), ppid=m[t.ppid], pgid=m[t.pgid], sid=m[t.sid],
                     threads=tuple((m[th[0]], *th[1:]) for th in t.threads)) for t in tree]
    rng.shuffle(tasks)
    return Tree({t.id: t for t in tasks}, namespaces=tuple(m[x] for x in tree.namespaces),
                external=frozenset(m[x] for x in tree.external))


def test_equal_and_wildcards() -> None:
    assert diff(BASE, BASE) == []
    other = BASE.replace_tasks([
        replace(BASE[1], child_subreaper=None, comm="init"),  # unknown flag, comm only on one side
        replace(BASE[2], threads=((4,), (3,))),  # thread order is not a difference
        replace(BASE[5], child_subreaper=True),  # a zombie's flag is never compared
        BASE[6],
    ])
    assert diff(BASE, other) == []


def test_each_difference_named() -> None:
    other = _tree(
        Task((1,), 0, 1, 1),
        Task((2,), 1, 2, 2),
        Task((5,), 1, 2, 2, ZOMBIE, 9),
        Task((7,), 1, 1, 1),
        namespaces=(1,), external=frozenset({9}),
    )
    d = diff(BASE, other)
    assert [str(x) for x in d] == [
        "external: {} (A) vs {9} (B)",
        "task 2: threads: [3, 4] (A) vs [] (B)",
        "task 5: ppid: 2 (A) vs 1 (B)",
        "task 5: exit_status: 1792 (A) vs 9 (B)",
        "task 6: only in A",
        "task 7: only in B",
    ]
    assert d[1].to_json() == {"task": 2, "field": "threads", "a": [[3], [4]], "b": []}
    assert Difference(None, "namespaces", frozenset({1}), frozenset()).__str__() == \
        "namespaces: {1} (A) vs {} (B)"


@pytest.mark.parametrize("seed", range(12))
def test_shape_equal_under_renaming(seed: int) -> None:
    tree, _ = generate(60, seed)
    renamed = _rename(tree, random.Random(seed))
    check_tree(renamed)
    r = shape_diff(tree, renamed)
    assert r.equal, r.reasons
    assert sorted(r.mapping) == sorted(tree.tasks)
    for x, y in r.mapping.items():  # the renaming found preserves every relation
        a, b = tree[x], renamed[y]
        assert (a.state, a.exit_status, len(a.threads), a.comm) == \
               (b.state, b.exit_status, len(b.threads), b.comm)
        if a.ppid in r.mapping:
            assert r.mapping[a.ppid] == b.ppid
        if a.pgid in r.mapping:
            assert r.mapping[a.pgid] == b.pgid
    if renamed.tasks.keys() != tree.tasks.keys():
        assert diff(tree, renamed)


@pytest.mark.parametrize("seed", range(8))
def test_shape_sees_a_moved_link(seed: int) -> None:
    tree, _ = generate(40, seed, features=("sessions", "groups", "zombies", "threads"))
    rng = random.Random(seed)
    movable = [t for t in tree if t.ppid in tree.tasks and tree[t.ppid].ppid in tree.tasks
               and t.state != ZOMBIE]
    if not movable:
        pytest.skip("no grandchild to move")
    t = rng.choice(movable)
    # re-hang t from its grandparent: same kinds of tasks, other arrangement (unless symmetric)
    moved = tree.replace_tasks(replace(x, ppid=tree[t.ppid].ppid) if x.id == t.id else x
                               for x in tree)
    r = shape_diff(tree, moved)
    assert not r.equal and r.reasons


def test_shape_needs_the_right_pairing() -> None:
    """Two alike branches whose grandchildren join their own parent's group: a pairing that
    crosses the branches is wrong, and the search must find the other one."""
    a = _tree(Task((1,), 0, 1, 1), Task((2,), 1, 2, 1), Task((3,), 1, 3, 1),
              Task((4,), 2, 2, 1), Task((5,), 3, 3, 1))
    b = _tree(Task((1,), 0, 1, 1), Task((20,), 1, 20, 1), Task((30,), 1, 30, 1),
              Task((40,), 30, 30, 1), Task((50,), 20, 20, 1))  # in-order pairing crosses
    r = shape_diff(a, b)
    assert r.equal and r.mapping[4] == 50 and r.mapping[5] == 40
    c = b.replace_tasks(replace(t, pgid=30) if t.id == 50 else t for t in b)  # 50 joins 30's group
    assert not shape_diff(a, c).equal


def test_shape_reports_kinds() -> None:
    other = BASE.replace_tasks(replace(t, state=ZOMBIE, exit_status=0) if t.id == 6 else t
                               for t in BASE)
    r = shape_diff(BASE, other)
    assert not r.equal
    assert any("1 (A) vs 0 (B): a task (alive" in x and "subreaper" in x for x in r.reasons)


def _write(tmp_path: Path, name: str, tree: Tree) -> str:
    p = tmp_path / name
    p.write_text(tree.dumps())
    return str(p)


def test_cli(tmp_path: Path) -> None:
    tree, _ = generate(30, 3)
    a = _write(tmp_path, "a.json", tree)
    b = _write(tmp_path, "b.json", _rename(tree, random.Random(1)))
    run = CliRunner().invoke
    r = run(main, ["diff", a, a])
    assert r.exit_code == 0 and r.output == ""
    r = run(main, ["diff", a, b])
    assert r.exit_code == 1 and r.output.strip().endswith("differences")
    r = run(main, ["diff", a, b, "--shape"])
    assert r.exit_code == 0 and r.output == ""
    r = run(main, ["diff", a, b, "--json"])
    out = json.loads(r.output)
    assert r.exit_code == 1 and out["equal"] is False and out["differences"]
    r = run(main, ["diff", a, b, "--shape", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["equal"] is True
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    r = run(main, ["diff", a, str(bad)])
    assert r.exit_code == 2 and r.output.startswith(f"procforge: {bad}: not JSON")
    r = run(main, ["diff", a, str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "cannot read" in r.output
