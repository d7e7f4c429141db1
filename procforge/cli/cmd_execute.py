"""`procforge execute HISTORY [--record] [--json] [-o TREE] [--detach | --no-hold]`."""

from __future__ import annotations

import json
import sys

import click

from procforge import steps as S
from procforge.cli import main
from procforge.cli.cmd_restore import write_pidfile
from procforge.cli.common import write_tree
from procforge.engine import StepResult, execute, model_explainer
from procforge.errors import EXIT_FAIL


def result_json(r: StepResult) -> dict[str, object]:
    return {"step": r.index + 1, "text": S.format_step(r.step), "outcome": r.outcome,
            "errno": r.errno, "reason": r.reason or None,
            "pid": list(r.pid) if r.pid else None, "status": r.status}


@main.command("execute")
@click.argument("history", metavar="HISTORY")
@click.option("--record", is_flag=True,
              help="Run every step and record its result instead of stopping at the first failure.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("-o", "--output", metavar="TREE",
              help="Read the resulting tree back and write it here.")
@click.option("--detach", is_flag=True,
              help="Leave the tree running; print the root's host pid last.")
@click.option("--pidfile", metavar="FILE", help="Write the root's host pid to FILE.")
@click.option("--no-hold", is_flag=True, help="Remove the tree as soon as the results are printed.")
def execute_cmd(history: str, record: bool, as_json: bool, output: str | None, detach: bool,
                pidfile: str | None, no_hold: bool) -> None:
    """Run the steps of HISTORY (text or JSON, '-' for stdin) on the real kernel in a fresh pid
    namespace, whose init (pid 1) is the state's only task at the start, and print each step's
    result: ok (with the pid a fork got), the errno, or why it could not be issued.

    Without --record the first failing step removes everything (exit 1). The tree is then held
    until SIGINT or SIGTERM, like restore, unless --detach or --no-hold. With --record, exit 1 when
    any step failed.
    """
    if detach and no_hold:
        raise click.UsageError("--detach and --no-hold exclude each other")
    steps = S.load(history)
    ex = execute(steps, mode="record" if record else "abort", explain=model_explainer(steps))
    try:
        if as_json:
            click.echo(json.dumps({"root_pid": ex.root_pid,
                                   "steps": [result_json(r) for r in ex.results]}, indent=1))
        else:
            for r in ex.results:
                click.echo(r.describe())
        if output:
            from procforge.capture import read_tree

            write_tree(output, read_tree(ex.root_pid, namespace=True))
        write_pidfile(pidfile, ex.root_pid)
    except BaseException:
        ex.kill()
        raise
    failed = any(not r.ok for r in ex.results)
    if detach:
        ex.detach()
        if not as_json:
            click.echo(ex.root_pid)
    elif no_hold:
        ex.kill()
    else:
        def ready() -> None:
            click.echo(f"root pid {ex.root_pid}; holding the tree until interrupted", err=True)
            sys.stderr.flush()

        ex.hold(ready)
    if failed:
        sys.exit(EXIT_FAIL)
