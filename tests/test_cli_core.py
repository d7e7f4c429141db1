"""The core commands as a user runs them: generate, show, simulate, validate, with their output
and documented exit codes (docs/cli.md), and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from procforge import steps as S
from procforge import tree as T
from procforge.cli import main


def cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("gen")
    tree, hist, hjson = d / "t.json", d / "h.txt", d / "h.json"
    code, _, err = cli("generate", "--tasks", "300", "--seed", "5", "-o", str(tree),
                       "--history", str(hist))
    assert code == 0 and "300 tasks" in err
    assert cli("generate", "-n", "300", "-s", "5", "--history", str(hjson), "-o", "-")[0] == 0
    return tree, hist, hjson


def test_generate_writes_a_valid_tree_and_its_history(made: tuple[Path, Path, Path]) -> None:
    tree_file, hist, hjson = made
    tree = T.load(str(tree_file))
    assert len(tree) == 300
    assert S.load(str(hist)) == S.load(str(hjson))
    assert hjson.read_text().startswith('{"format":"procforge-steps/1"')


def test_generate_to_stdout_is_the_tree_file() -> None:
    code, out, _ = cli("generate", "-n", "20", "-s", "1")
    assert code == 0 and len(T.loads(out)) == 20


def test_generate_is_deterministic() -> None:
    assert cli("generate", "-n", "200", "-s", "9")[1] == cli("generate", "-n", "200", "-s", "9")[1]


def test_generate_features_select_what_is_made() -> None:
    code, out, _ = cli("generate", "-n", "500", "-s", "2", "--features", "none")
    tree = T.loads(out)
    assert code == 0 and tree.namespaces == (1,) and all(t.state == "alive" for t in tree)


@pytest.mark.parametrize(("args", "message"), [
    (["generate", "-n", "10", "--features", "colour"], "unknown feature 'colour'"),
    (["generate", "-n", "0"], "Invalid value for '--tasks'"),
    (["generate"], "Missing option '--tasks'"),
    (["generate", "-n", "5000000"], "--tasks must be between 1 and 4000000"),
])
def test_generate_bad_options_exit_2(args: list[str], message: str) -> None:
    code, _, err = cli(*args)
    assert code == 2 and message in err


def test_simulate_replays_generates_history_to_the_same_tree(made: tuple[Path, Path, Path]) -> None:
    tree_file, hist, _ = made
    code, out, _ = cli("simulate", str(hist))
    assert code == 0
    a, b = T.loads(out).to_json(), T.load(str(tree_file)).to_json()
    a.pop("source")
    b.pop("source")
    assert a == b


def test_simulate_failing_step_exits_1_naming_step_and_errno(tmp_path: Path) -> None:
    h = tmp_path / "h.txt"
    h.write_text("fork 1\nsetsid 2\nsetsid 2\n")
    code, _, err = cli("simulate", str(h))
    assert code == 1 and "step 3 (setsid 2) failed: EPERM" in err


def test_simulate_bad_syntax_exits_2(tmp_path: Path) -> None:
    h = tmp_path / "h.txt"
    h.write_text("fork 1\nspawn 2\n")
    code, _, err = cli("simulate", str(h))
    assert code == 2 and "h.txt:2: unknown step 'spawn'" in err and err.count("\n") == 1


def test_validate_valid_and_invalid(made: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tree_file = made[0]
    code, out, _ = cli("validate", str(tree_file))
    assert code == 0 and "valid: 300 tasks" in out
    data = json.loads(tree_file.read_text())
    data["tasks"][1]["ppid"] = 999_999
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, _, err = cli("validate", str(bad))
    assert code == 2 and err.startswith(f"procforge: {bad}: task ") and err.count("\n") == 1


def test_show_columns_marks_and_summary(tmp_path: Path) -> None:
    h = tmp_path / "h.txt"
    h.write_text("fork 1\nsetsid 2\nfork 2\nfork 2\nsetpgid 2 4 4\nfork 4\nstop 5\n"
                 "exit 3 code=200\nfork 2\nexit 6 signal=9\nsubreaper 2 on\nthread 4 tid=40\n"
                 "fork 2 newns\nfork 7\nfork 1\nsetsid 9\nfork 9\nexit 9 code=0\nwait 1 9\n"
                 "comm 2 shell\n")
    t = tmp_path / "t.json"
    assert cli("simulate", str(h), "-o", str(t))[0] == 0
    code, out, _ = cli("show", str(t))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "PPID", "PGID", "SID", "STATE", "COMMAND"]
    by_pid = {int(x.split()[0]): x for x in lines[1:-1] if x.split()[0].isdigit()}
    assert "[zombie: exit 200]" in by_pid[3] and "[zombie: killed SIGKILL]" in by_pid[6]
    assert "[stopped]" in by_pid[5] and by_pid[5].split()[4] == "stopped"
    assert "[subreaper]" in by_pid[2] and "shell" in by_pid[2]
    assert "[ns init, pid 7/1]" in by_pid[7] and "[pid 8/2]" in by_pid[8]
    assert "[1 thread: 40]" in by_pid[4]
    assert "[pgid 9: leader gone]" in by_pid[10] and "[sid 9: leader gone]" in by_pid[10]
    assert by_pid[5].index("-") > by_pid[4].index("-")  # indented under its parent
    assert lines[-1].startswith("9 tasks: 6 alive, 1 stopped, 2 zombies; 1 thread;")


def test_show_depth_limit_and_json(made: tuple[Path, Path, Path]) -> None:
    tree_file = made[0]
    code, out, _ = cli("show", str(tree_file), "--depth", "1", "--no-summary")
    assert code == 0 and "descendants below depth 1" in out
    code, out, _ = cli("show", str(tree_file), "--limit", "5")
    assert code == 0 and len(out.splitlines()) == 1 + 5 + 2 and "295 more tasks" in out
    code, out, _ = cli("show", str(tree_file), "--json")
    assert code == 0 and T.loads(out) == T.load(str(tree_file))


def test_show_reads_stdin_and_rejects_bad_files(tmp_path: Path) -> None:
    _, tree_text, _ = cli("generate", "-n", "5", "-s", "1")
    assert cli("show", "-", input=tree_text)[0] == 0
    code, _, err = cli("show", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    (tmp_path / "x.json").write_text('{"format": "procforge-tree/1", "tasks": []}')
    code, _, err = cli("show", str(tmp_path / "x.json"))
    assert code == 2 and err.count("\n") == 1


def test_console_script_runs_generate_validate_show(tmp_path: Path) -> None:
    # the real entry point in a subprocess: the pipeline of the issue, at a small size
    t = tmp_path / "t.json"
    exe = Path(sys.executable).with_name("procforge")
    run = [str(exe)] if exe.exists() else ["procforge"]
    for args in (["generate", "--tasks", "2000", "--seed", "1", "-o", str(t)],
                 ["validate", str(t)], ["show", str(t), "--limit", "3"]):
        r = subprocess.run(run + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
