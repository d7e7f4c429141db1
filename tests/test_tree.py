"""The tree file: every field loads and dumps back exactly, and every broken invariant is one
TreeError naming the task and field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from procforge import tree as T
from procforge.errors import TreeError

# init 1 (in the restorer's session 0), a session 2 with a dead-leader group 9 (member 4), a
# zombie, a threaded task whose leader exited, a subreaper, a namespace init with a child
VALID: dict[str, Any] = {
    "format": "procforge-tree/1",
    "source": "test",
    "namespaces": [{"init": 1}, {"init": 6}],
    "external": [],
    "tasks": [
        {"pid": [1], "ppid": 0, "pgid": 0, "sid": 0, "state": "alive", "child_subreaper": False},
        {"pid": [2], "ppid": 1, "pgid": 2, "sid": 2, "state": "alive", "child_subreaper": True,
         "comm": "sh"},
        {"pid": [3], "ppid": 2, "pgid": 2, "sid": 2, "state": "zombie", "exit_status": 512},
        {"pid": [4], "ppid": 2, "pgid": 9, "sid": 2, "state": "stopped"},
        {"pid": [5], "ppid": 2, "pgid": 9, "sid": 2, "state": "alive", "threads": [[7], [8]],
         "leader_exited": True, "child_subreaper": None},
        {"pid": [6, 1], "ppid": 1, "pgid": 0, "sid": 0, "state": "alive"},
        {"pid": [10, 2], "ppid": 6, "pgid": 0, "sid": 0, "state": "zombie", "exit_status": 0x86},
    ],
}


def load(data: Any) -> T.Tree:
    return T.from_json(data, source="t.json")


def broken(**changes: Any) -> dict[str, Any]:
    """VALID with task fields changed: changes={'task3': {'state': 'alive'}} style via kwargs."""
    data = copy.deepcopy(VALID)
    for key, value in changes.items():
        if key.startswith("t"):
            pid = int(key[1:])
            task = next(t for t in data["tasks"] if t["pid"][0] == pid)
            for f, v in value.items():
                if v is ...:
                    task.pop(f, None)
                else:
                    task[f] = v
        else:
            data[key] = value
    return data


def test_valid_tree_loads_with_every_field() -> None:
    tree = load(VALID)
    assert len(tree) == 7 and tree.root.id == 1
    assert tree.namespaces == (1, 6) and tree.source == "test"
    t5 = tree[5]
    assert t5.threads == ((7,), (8,)) and t5.leader_exited and t5.child_subreaper is None
    assert tree[3].exit_status == 2 << 8 and tree[10].pid == (10, 2) and tree[10].level == 1
    assert tree[2].comm == "sh" and tree[2].child_subreaper is True


def test_dump_and_load_round_trip_exactly() -> None:
    tree = load(VALID)
    again = T.loads(tree.dumps())
    assert again == tree
    assert again.dumps() == tree.dumps()
    assert json.loads(tree.dumps()) == tree.to_json()


def test_load_reads_files_and_names_them(tmp_path) -> None:  # noqa: ANN001
    p = tmp_path / "t.json"
    p.write_text(json.dumps(VALID))
    assert len(T.load(str(p))) == 7
    with pytest.raises(TreeError, match="cannot read"):
        T.load(str(tmp_path / "nope.json"))
    p.write_text("{")
    with pytest.raises(TreeError, match=r"t\.json: not JSON"):
        T.load(str(p))


@pytest.mark.parametrize(("data", "message"), [
    (broken(format="procforge-tree/9"), "unknown format"),
    (broken(color="red"), "top level"),
    (broken(t3={"pid": "3"}), "task 3: field pid: must be array"),
    (broken(t3={"pid": 3}), "task #3: field pid"),
    (broken(t2={"ppid": -1}), "task 2: field ppid"),
    (broken(t2={"state": "running"}), "task 2: field state"),
    (broken(t2={"nice": 5}), "task 2"),
    (broken(t2={"sid": ...}), "task 2"),
    (broken(t2={"comm": "x" * 16}), "task 2: field comm"),
    (broken(t2={"child_subreaper": "yes"}), "task 2: field child_subreaper"),
])
def test_schema_errors_name_task_and_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(TreeError) as e:
        load(data)
    assert str(e.value).startswith("t.json: ") and message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("data", "message"), [
    (broken(t4={"ppid": 99}), "task 4: field ppid: the tree must have one root"),
    (broken(t5={"threads": [[4]]}), "task 5: field threads: thread id 4 is also a task's pid"),
    (broken(t5={"threads": [[3], [8]]}), "thread id 3 is also a task's pid"),
    (broken(t4={"sid": 0}), "spans sessions"),
    (broken(t2={"pgid": 9}), "task 2: field pgid: a session leader stays in its own group 2"),
    (broken(t3={"exit_status": ...}), "task 3: field exit_status: a zombie needs its wait status"),
    (broken(t2={"exit_status": 0}), "task 2: field exit_status: only a zombie"),
    (broken(t3={"exit_status": 0x7F}), "is not a wait status"),
    (broken(t3={"threads": [[20]]}), "a zombie has no other threads"),
    (broken(t2={"leader_exited": True}), "leader_exited"),
    (broken(t10={"pid": [10]}), "task 10: field pid: has 1 levels; its namespace has 2"),
    (broken(t6={"pid": [6, 2]}), "task 6: field pid: namespace init has pid 2"),
    (broken(namespaces=[{"init": 1}]), "task 6: field pid"),
    (broken(namespaces=[{"init": 1}, {"init": 6}, {"init": 6}]), "an init is listed twice"),
    (broken(namespaces=[{"init": 1}, {"init": 6}, {"init": 55}]), "init 55 is not a task"),
    (broken(t10={"pid": [10, 1]}), "pid 1 in its namespace but not listed"),
    (broken(external=[2]), "field external: id 2 is a task or thread"),
    (broken(t4={"pgid": 7}), "task 4: field pgid: 7 is a thread id"),
    (broken(t1={"ppid": 42}), "the root's parent 42 is neither 0 nor an external id"),
])
def test_invariant_errors_name_task_and_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(TreeError) as e:
        load(data)
    assert message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_parent_that_is_a_zombie_is_rejected() -> None:
    data = broken(t4={"ppid": 3})
    with pytest.raises(TreeError, match="task 4: field ppid: parent 3 is a zombie"):
        load(data)


def test_root_with_external_parent_is_valid() -> None:
    data = broken(t1={"ppid": 42}, external=[42])
    assert load(data).root.ppid == 42


def test_duplicate_numbers_at_a_level_are_rejected() -> None:
    data = broken(t10={"pid": [10, 1]})
    with pytest.raises(TreeError):
        load(data)
    data = copy.deepcopy(VALID)
    data["tasks"].append({"pid": [11, 2], "ppid": 6, "pgid": 0, "sid": 0, "state": "alive"})
    with pytest.raises(TreeError, match="task 11: field pid: number 2 at level 1"):
        load(data)


def test_same_inner_number_in_two_namespaces_is_fine() -> None:
    data = copy.deepcopy(VALID)
    data["namespaces"].append({"init": 20})
    data["tasks"] += [
        {"pid": [20, 1], "ppid": 1, "pgid": 0, "sid": 0, "state": "alive"},
        {"pid": [21, 2], "ppid": 20, "pgid": 0, "sid": 0, "state": "alive"},
    ]
    assert load(data)[21].pid == (21, 2)
