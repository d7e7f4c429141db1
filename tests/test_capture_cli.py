"""`procforge capture`, as a user runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_capture_world import World

from procforge import tree as T
from procforge.cli import main

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for pid namespaces")

SCRIPT = r'''
report("s", spawn(lambda: (setsid(), subreaper(), spawn(lambda: 3), None)[-1]))
'''


def test_capture_namespace_to_file(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    with World(SCRIPT) as w:
        r = CliRunner().invoke(main, ["capture", str(w.init), "--namespace", "-o", str(out)])
        assert r.exit_code == 0, r.output
        tree = T.load(str(out))
        s = w.info["s"]
        assert tree[s].sid == s and tree[s].child_subreaper is True
        assert tree[1].child_subreaper is False and tree.namespaces == (1,)
        zombie = next(t for t in tree if t.ppid == s)
        assert zombie.exit_status == 3 << 8 and zombie.child_subreaper is None
        r = CliRunner().invoke(main, ["capture", str(w.init), "--namespace", "--no-probe"])
        assert r.exit_code == 0
        assert all(t.child_subreaper is None for t in T.loads(r.output))
        # not an init: a bad argument
        r = CliRunner().invoke(main, ["capture", str(s), "--namespace", "--proc", w.proc_root])
        assert r.exit_code == 2 and "not a pid namespace init" in r.output
        assert len(r.output.strip().splitlines()) == 1


def test_capture_bad_arguments(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["capture", "4000000"])
    assert r.exit_code == 2 and r.output.startswith("procforge: no process 4000000")
    r = CliRunner().invoke(main, ["capture", "1", "--proc", str(tmp_path)])
    assert r.exit_code == 3 and "not a proc file system" in r.output
    r = CliRunner().invoke(main, ["capture", "zero"])
    assert r.exit_code == 2
