"""The process tree and its file format.

A tree is what a restore must reproduce: tasks (thread groups) with their pids at every pid-namespace
level, parent, process group, session, state and threads, plus the namespaces and the ids that belong
to the environment. It is a plain value: loading checks the JSON Schema (structure) and then the
invariants that every tree a Linux kernel can hold satisfies (semantics), so that the planner and the
model never see a tree that cannot exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

from procforge.errors import TreeError

FORMAT = "procforge-tree/1"
ALIVE, ZOMBIE, STOPPED = "alive", "zombie", "stopped"
STATES = (ALIVE, ZOMBIE, STOPPED)


@dataclass(frozen=True, slots=True)
class Task:
    """One thread group. Numbers are top-level pids except `pid` and thread ids, which list levels."""

    pid: tuple[int, ...]
    ppid: int
    pgid: int
    sid: int
    state: str = ALIVE
    exit_status: int | None = None
    threads: tuple[tuple[int, ...], ...] = ()
    leader_exited: bool = False
    child_subreaper: bool | None = False
    comm: str = ""

    @property
    def id(self) -> int:
        """The top-level pid: the task's identity in the file."""
        return self.pid[0]

    @property
    def level(self) -> int:
        return len(self.pid) - 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": list(self.pid),
            "ppid": self.ppid,
            "pgid": self.pgid,
            "sid": self.sid,
            "state": self.state,
        }
        if self.exit_status is not None:
            out["exit_status"] = self.exit_status
        if self.threads:
            out["threads"] = [list(t) for t in self.threads]
        if self.leader_exited:
            out["leader_exited"] = True
        out["child_subreaper"] = self.child_subreaper
        if self.comm:
            out["comm"] = self.comm
        return out


@dataclass(frozen=True, slots=True)
class Tree:
    """Tasks keyed by top-level pid (in file order), namespace inits, and external ids."""

    tasks: dict[int, Task]
    namespaces: tuple[int, ...] = ()
    external: frozenset[int] = frozenset()
    source: str = ""
    _children: dict[int, list[int]] | None = field(default=None, init=False, compare=False, repr=False)
    _inits: frozenset[int] | None = field(default=None, init=False, compare=False, repr=False)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, pid: int) -> Task:
        return self.tasks[pid]

    @property
    def root(self) -> Task:
        for t in self.tasks.values():
            if t.ppid not in self.tasks:
                return t
        raise TreeError("no root task: every task's parent is in the tree")

    def children(self) -> dict[int, list[int]]:
        """Children of each task, in file order (computed once)."""
        if self._children is None:
            ch: dict[int, list[int]] = {p: [] for p in self.tasks}
            for t in self.tasks.values():
                if t.ppid in ch:
                    ch[t.ppid].append(t.id)
            object.__setattr__(self, "_children", ch)
        assert self._children is not None
        return self._children

    def is_ns_init(self, pid: int) -> bool:
        inits = self._inits
        if inits is None:
            inits = frozenset(self.namespaces)
            object.__setattr__(self, "_inits", inits)
        return pid in inits

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT}
        if self.source:
            out["source"] = self.source
        out["namespaces"] = [{"init": p} for p in self.namespaces]
        out["external"] = sorted(self.external)
        out["tasks"] = [t.to_json() for t in self.tasks.values()]
        return out

    def dumps(self) -> str:
        """The file text: one task per line, so that diffs and greps of big trees stay readable."""
        head = self.to_json()
        tasks = head.pop("tasks")
        lines = [json.dumps(t, separators=(",", ":")) for t in tasks]
        body = json.dumps(head, indent=1)[:-2]
        return body + ',\n "tasks": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"

    def replace_tasks(self, tasks: Iterable[Task]) -> Tree:
        return replace(self, tasks={t.id: t for t in tasks})


@cache
def _schema_validator() -> Any:
    import fastjsonschema

    text = resources.files("procforge.schema").joinpath("tree.schema.json").read_text()
    return fastjsonschema.compile(json.loads(text))


def _where(data: Any, path: str) -> str:
    """Turn a schema path like data.tasks[3].pgid into 'task 7: field pgid'."""
    import re

    m = re.match(r"data\.tasks\[(\d+)\]\.?(.*)", path)
    if not m:
        return path.removeprefix("data").removeprefix(".") or "top level"
    idx, rest = int(m.group(1)), m.group(2)
    try:
        pid = data["tasks"][idx]["pid"][0]
        who = f"task {pid}"
    except (KeyError, IndexError, TypeError):
        who = f"task #{idx + 1}"
    field_name = rest.split(".")[0].split("[")[0] if rest else ""
    return f"{who}: field {field_name}" if field_name else who


def from_json(data: Any, source: str | None = None) -> Tree:
    """Build and check a tree from parsed JSON; raise TreeError with a one-line reason."""
    import fastjsonschema

    if isinstance(data, dict) and data.get("format") not in (None, FORMAT):
        raise TreeError(f"unknown format {data.get('format')!r} (expected {FORMAT!r})", source=source)
    try:
        _schema_validator()(data)
    except fastjsonschema.JsonSchemaValueException as e:
        where = _where(data, e.name or "")  # e.name is the dotted path, data.tasks[3].pgid
        msg = e.message.removeprefix(e.name).strip() if e.name else e.message
        raise TreeError(f"{where}: {msg}", source=source) from None
    tasks: dict[int, Task] = {}
    for t in data["tasks"]:
        task = Task(
            pid=tuple(t["pid"]),
            ppid=t["ppid"],
            pgid=t["pgid"],
            sid=t["sid"],
            state=t["state"],
            exit_status=t.get("exit_status"),
            threads=tuple(tuple(x) for x in t.get("threads", ())),
            leader_exited=t.get("leader_exited", False),
            child_subreaper=t.get("child_subreaper", False),
            comm=t.get("comm", ""),
        )
        if task.id in tasks:
            raise TreeError(f"task {task.id}: field pid: duplicate task", source=source)
        tasks[task.id] = task
    tree = Tree(
        tasks=tasks,
        namespaces=tuple(n["init"] for n in data.get("namespaces", ())),
        external=frozenset(data.get("external", ())),
        source=data.get("source", ""),
    )
    from procforge.invariants import check_tree

    check_tree(tree, source=source)
    return tree


def loads(text: str, source: str | None = None) -> Tree:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TreeError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}", source=source) from None
    return from_json(data, source=source)


def load(path: str) -> Tree:
    """Read and validate a tree file ('-' for standard input)."""
    from procforge.textio import read_text

    try:
        text = read_text(path)
    except OSError as e:
        raise TreeError(f"cannot read: {e.strerror}", source=path) from None
    except UnicodeDecodeError:
        raise TreeError("not a text file", source=path) from None
    return loads(text, source=path)


def dump(tree: Tree, path: str) -> None:
    import sys

    text = tree.dumps()
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
