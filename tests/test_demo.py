"""The demo, end to end on the real kernel: identical trees, nothing left behind."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from procforge import demo as D
from procforge.cli import main

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.path.exists("/proc/self/ns/user"),
                                reason="needs root or user namespaces")


def test_demo_restores_the_tree_exactly_and_cleans_up():
    res = D.run(say=lambda _s: None)
    assert res.identical, res.differences
    o = res.original
    assert len(o) == 11 and set(o.namespaces) == {1, 10}
    assert o[9].exit_status == 200 << 8 and o[11].exit_status == 15
    assert o[4].sid == 3 and 3 not in o.tasks and o[4].ppid == 2 and o[2].child_subreaper
    assert o[6].ppid == 1 and o[6].sid == 5 and o[8].pgid == 7 and o[7].pgid == 5
    assert o[8].state == "stopped" and o[12].threads == ((13, 4),)
    assert res.plan.stats()["helpers"] == res.plan.stats()["helper_lower_bound"] == 1


def test_demo_command_prints_both_trees_and_the_verdict():
    out = CliRunner().invoke(main, ["demo"])
    assert out.exit_code == 0, out.output
    assert "verdict: IDENTICAL" in out.output and "original (built by the history)" in out.output
    hist = CliRunner().invoke(main, ["demo", "--history"])
    assert hist.output.startswith("# a tree CRIU cannot restore")
