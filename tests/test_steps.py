"""The step language: both forms parse what they print (any step list, exactly), and bad input is
one StepSyntaxError naming the line or step."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procforge import steps as S
from procforge.errors import StepSyntaxError

nr = st.integers(min_value=1, max_value=4_194_303)
task = st.integers(min_value=0, max_value=4_194_303)
pids = st.lists(nr, min_size=1, max_size=4).map(tuple)
status = st.one_of(
    st.integers(0, 255).map(lambda c: c << 8),
    st.tuples(st.integers(1, 64), st.booleans()).map(lambda s: s[0] | (0x80 if s[1] else 0)),
)
name = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="#"),
    min_size=1, max_size=15,
).filter(lambda s: not any(c.isspace() for c in s))

step = st.one_of(
    st.builds(S.Fork, task, st.none() | pids, st.booleans(), st.booleans()),
    st.builds(S.Thread, task, st.none() | pids),
    st.builds(S.Setsid, task),
    st.builds(S.Setpgid, task, task, task),
    st.builds(S.Subreaper, task, st.booleans()),
    st.builds(S.Sigchld, task, st.booleans()),
    st.builds(S.Exit, task, status),
    st.builds(S.ExitLeaderThread, task),
    st.builds(S.Wait, task, task),
    st.builds(S.Stop, task),
    st.builds(S.Comm, task, name),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=30))
def test_text_form_round_trips_exactly(steps: list[S.Step]) -> None:
    text = S.dumps(steps, "text")
    assert S.loads(text) == steps
    assert S.dumps(S.loads(text), "text") == text


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=30))
def test_json_form_round_trips_exactly(steps: list[S.Step]) -> None:
    text = S.dumps(steps, "json")
    assert S.loads(text) == steps
    assert S.dumps(S.loads(text), "json") == text


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=30))
def test_text_and_json_forms_agree(steps: list[S.Step]) -> None:
    assert S.loads(S.dumps(S.loads(S.dumps(steps, "json")), "text")) == steps


def test_text_form_examples() -> None:
    text = """
    # a comment line
    fork 1 pid=7                # clone3 with set_tid
    fork 7 pid=1 newns
    fork 3 clone_parent
    thread 7 tid=9/2
    setsid 7
    setpgid 7 8 0
    subreaper 7 on
    sigchld 7 ignore
    exit 7 code=200
    exit 8 signal=6+core
    exit_leader_thread 7
    wait 1 7
    stop 7
    comm 7 worker
    """
    assert S.loads(text) == [
        S.Fork(1, (7,)), S.Fork(7, (1,), new_ns=True), S.Fork(3, clone_parent=True),
        S.Thread(7, (9, 2)), S.Setsid(7), S.Setpgid(7, 8, 0), S.Subreaper(7, True),
        S.Sigchld(7, True), S.Exit(7, 200 << 8), S.Exit(8, 6 | 0x80), S.ExitLeaderThread(7),
        S.Wait(1, 7), S.Stop(7), S.Comm(7, "worker"),
    ]


def test_json_form_example() -> None:
    data = {"format": "procforge-steps/1", "steps": [
        {"op": "fork", "parent": 1, "pid": [300, 1], "new_ns": True},
        {"op": "exit", "task": 300, "status": 9},
    ]}
    assert S.loads(json.dumps(data)) == [S.Fork(1, (300, 1), new_ns=True), S.Exit(300, 9)]
    assert S.loads(json.dumps(data["steps"])) == S.loads(json.dumps(data))  # a bare list too


@pytest.mark.parametrize(("text", "message"), [
    ("frob 1", "unknown step 'frob'"),
    ("fork", "usage: fork PARENT"),
    ("fork x", "parent must be a number"),
    ("fork 1 pid=0", "pids must be positive"),
    ("fork 1 pid=3/-1", "must not be negative"),
    ("fork 1 fast", "unknown fork option 'fast'"),
    ("setpgid 1 2", "usage: setpgid CALLER TARGET PGID"),
    ("subreaper 1 maybe", "subreaper takes on or off"),
    ("sigchld 1 catch", "sigchld takes ignore or default"),
    ("exit 1 code=256", "exit code 256 is above 255"),
    ("exit 1 signal=65", "signal 65 is not between 1 and 64"),
    ("exit 1 status=3", "expected code=N or signal=N"),
    ("comm 1 abcdefghijklmnopq", "longer than 15"),
    ("thread 1 9", "usage: thread TASK"),
])
def test_text_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(StepSyntaxError) as e:
        S.loads("fork 1\n" + text, "plan.txt")
    assert str(e.value).startswith("plan.txt:2: ") and message in str(e.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"format": "other", "steps": []}, "expected"),
    ([{"parent": 1}], "a step is an object with an 'op'"),
    ([{"op": "fly"}], "unknown step 'fly'"),
    ([{"op": "fork", "parent": 1, "speed": 2}], "unknown field 'speed'"),
    ([{"op": "fork", "parent": -1}], "non-negative integer"),
    ([{"op": "fork", "parent": 1, "pid": [0]}], "list of positive pids"),
    ([{"op": "fork", "parent": 1, "new_ns": 1}], "true or false"),
    ([{"op": "comm", "task": 1, "name": "a b"}], "without spaces"),
    ([{"op": "fork"}], "fork"),
])
def test_json_errors_name_the_step(data: object, message: str) -> None:
    with pytest.raises(StepSyntaxError) as e:
        S.loads(json.dumps(data), "plan.json")
    assert str(e.value).startswith("plan.json") and message in str(e.value)


def test_unreadable_file_is_a_one_line_error(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(StepSyntaxError, match="cannot read"):
        S.load(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StepSyntaxError, match="not JSON"):
        S.load(str(bad))
