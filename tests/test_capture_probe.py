"""The subreaper probe on real tasks: the flag it reads, and that every task is left as it was
(same state, untraced, its interrupted system call carried on as if nothing happened)."""

from __future__ import annotations

import os
import platform
from dataclasses import replace
from pathlib import Path

import pytest
from test_capture_world import World

from procforge.capture import read_tree
from procforge.capture.probe import ProbeFailed, probe_thread
from procforge.errors import EnvironmentProblem

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or platform.machine() != "x86_64",
                                reason="needs root and x86_64")

SCRIPT = r'''
import ctypes, os
report("sub", spawn(subreaper))
report("plain", spawn())
report("stopped", spawn(lambda: (subreaper(), "stop")[-1]))
report("threaded", spawn(lambda: (subreaper(), threads(2), None)[-1]))
report("leaderless", spawn(lambda: (subreaper(), threads(1), "exit_leader")[-1]))
report("zombie", spawn(lambda: 4))
def napper():
    ts, rem = (ctypes.c_long * 2)(1, 500_000_000), (ctypes.c_long * 2)()
    r = _libc.nanosleep(ts, rem)
    report("nap", [r, ctypes.get_errno()])
report("napper", spawn(lambda: napper))
def reader():
    fd = os.open(FIFO, os.O_RDWR)
    report("got", os.read(fd, 100).decode())
report("reader", spawn(lambda: reader))
def spin():
    x = 0
    while True:
        x += 1
report("busy", spawn(lambda: (subreaper(), spin)[-1]))
'''


@pytest.fixture
def world(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with World(f"FIFO = {str(fifo)!r}\n" + SCRIPT) as w:
        w.fifo = fifo  # type: ignore[attr-defined]
        yield w


def _tracers(w: World) -> dict[int, int]:
    out = {}
    for tid in _all_tids(w.init):
        with open(f"/proc/{tid}/status") as f:
            out[tid] = int(next(ln for ln in f if ln.startswith("TracerPid:")).split()[1])
    return out


def _all_tids(init: int) -> list[int]:
    todo, out = [init], []
    while todo:
        p = todo.pop()
        for tid in os.listdir(f"/proc/{p}/task"):
            out.append(int(tid))
            with open(f"/proc/{p}/task/{tid}/children") as f:
                todo.extend(int(x) for x in f.read().split())
    return out


def test_probe_reads_flags_and_leaves_tasks_untouched(world: World) -> None:
    i = world.info
    before = read_tree(world.init)
    probed = read_tree(world.init, probe_subreaper=True)
    after = read_tree(world.init)
    flags = {p: t.child_subreaper for p, t in probed.tasks.items()}
    assert flags[1] is False
    for name in ("sub", "stopped", "threaded", "leaderless", "busy"):
        assert flags[i[name]] is True, name
    for name in ("plain", "napper", "reader"):
        assert flags[i[name]] is False, name
    assert flags[i["zombie"]] is None  # a zombie runs nothing: unknown
    # nothing else changed: states (the stopped one is still stopped), threads, parents
    strip = {p: replace(t, child_subreaper=None) for p, t in probed.tasks.items()}
    assert strip == before.tasks == after.tasks
    assert set(_tracers(world).values()) == {0}
    # the interrupted calls carry on as the kernel would have: the sleep ends in full, the read
    # gets its data
    os.write(os.open(world.fifo, os.O_WRONLY | os.O_NONBLOCK), b"hello")  # type: ignore[attr-defined]
    got = {}
    while len(got) < 2:
        got.update(world.next_report())
    assert got == {"nap": [0, 0], "got": "hello"}


def test_probe_refusals(world: World) -> None:
    with pytest.raises(ProbeFailed):
        probe_thread(4_000_000)
    with pytest.raises(EnvironmentProblem, match="not the /proc of this process"):
        read_tree(1, proc=world.proc_root, probe_subreaper=True)


def test_probe_of_own_tree() -> None:
    """The capturing process cannot trace itself: it asks the kernel directly."""
    tree = read_tree(os.getpid(), namespace=False, probe_subreaper=True)
    assert tree[os.getpid()].child_subreaper is False
