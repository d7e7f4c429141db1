"""The differential runner (procforge.fuzz): the kernel judges the model. CI runs a few hundred
short histories, half of them with wrong steps inserted, and wants no disagreement; planted model
bugs must be found at the right step. Every namespace made here is gone at the end."""

from __future__ import annotations

import os
import random

import pytest
from click.testing import CliRunner

from procforge import fuzz
from procforge import steps as S
from procforge.cli import main
from procforge.kernel import exit as kexit
from procforge.kernel import signals as ksignals
from procforge.kernel.machine import Kernel

root = pytest.mark.skipif(os.geteuid() != 0, reason="reads zombies' exit codes: run as root")


@root
def test_a_few_hundred_histories_agree() -> None:
    st = fuzz.campaign(histories=300, seed=20_000, max_tasks=30, cuts=1)
    assert st.histories == 300 and st.mutated > 100
    assert st.failing_steps > 100  # the mutations make the kernel refuse steps, and errnos agree
    assert [d.text() for d in st.disagreements] == []


def test_mutations_are_refused_in_many_ways() -> None:
    """Mutated histories hold steps the model refuses with many errnos, and none that traps an
    init or that the model cannot decide."""
    answers: set[str] = set()
    for seed in range(40):
        steps, _, _ = fuzz.history(seed, 20, mutate_ratio=1.0)
        k = Kernel.fresh()
        for s in steps:
            assert not fuzz.traps_an_init(k, s)
            f = k.apply(s)
            assert f is None or "host" not in f.reason and "for ever" not in f.reason
            answers.add(fuzz.answer(f))
    assert {"ok", "EPERM", "ESRCH", "EINVAL", "EEXIST", "ECHILD", "not executable"} <= answers


def test_a_disagreement_is_a_replayable_history() -> None:
    steps = S.parse_text("fork 1\nfork 2\nexit 2 signal=17")
    d = fuzz.Disagreement(tuple(steps), 2, "result", "not executable", "ok", "test",
                          ("pid=2", "pid=3", "not executable"))
    text = d.text()
    assert text.startswith("# procforge fuzz: disagreement at step 3 (exit 2 signal=17)")
    assert S.parse_text(text) == steps
    assert "fork 2  # kernel: pid=3" in text


@root
def test_a_planted_result_bug_is_found_at_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ksignals, "NO_KILL", frozenset())  # the old bug: SIGCHLD "kills"
    d, _ = fuzz.judge(S.parse_text("fork 1\nfork 2\nexit 3 code=1\nexit 2 signal=17\nfork 1"))
    assert d is not None and (d.index, d.kind) == (3, "result")
    assert d.kernel.startswith("not executable") and d.model == "ok"


@root
def test_a_planted_tree_bug_is_found_by_bisection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that forgets subreapers: the trees part at the exit that orphans a task."""
    monkeypatch.setattr(kexit, "_find_new_reaper", lambda father: father.ns.reaper)
    text = ("fork 1\nsubreaper 2 on\nfork 2\nfork 3\nfork 1\nfork 1\nexit 3 code=0\nfork 1\n"
            "fork 1\nfork 1")
    d, runs = fuzz.judge(S.parse_text(text))
    assert d is not None and (d.index, d.kind) == (6, "tree")
    assert "task 4: ppid: 2 (kernel) vs 1 (model)" in d.kernel
    assert runs > 2  # found by running prefixes


@root
def test_cli_runs_and_reports() -> None:
    r = CliRunner().invoke(main, ["fuzz", "--kernel", "--seconds", "2", "--tasks", "8"])
    assert r.exit_code == 0, r.output
    assert "histories" in r.output and "0 disagreement(s)" in r.output


def test_cli_needs_the_kernel() -> None:
    r = CliRunner().invoke(main, ["fuzz", "--seconds", "1"])
    assert r.exit_code == 2 and "--kernel" in r.output


def test_history_is_a_function_of_its_seed() -> None:
    assert fuzz.history(7, 25) == fuzz.history(7, 25)
    assert random.Random(1).random() == random.Random(1).random()
