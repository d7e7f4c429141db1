"""`procforge simulate HISTORY [--from TREE] [-o TREE]`: run steps in the kernel model."""

from __future__ import annotations

import sys

import click

from procforge import steps as S
from procforge import tree as T
from procforge.cli import main
from procforge.cli.common import echo_json, write_tree
from procforge.errors import EXIT_FAIL
from procforge.kernel import simulate as run_model


@main.command()
@click.argument("history", metavar="HISTORY")
@click.option("--from", "start", metavar="TREE", help="Start from this tree instead of a fresh namespace.")
@click.option("-o", "--output", metavar="TREE", help="Write the resulting tree here (default: stdout).")
@click.option("--json", "as_json", is_flag=True, help="Report a failure as JSON.")
def simulate(history: str, start: str | None, output: str | None, as_json: bool) -> None:
    """Run the steps of HISTORY (text or JSON form, '-' for stdin) in the kernel model.

    Starts from a fresh pid namespace holding only its init (pid 1), or from --from TREE. Prints the
    resulting tree, or the first failing step with its errno and reason (exit 1).
    """
    steps = S.load(history)
    base = T.load(start) if start else None
    out = run_model(steps, base)
    if out.failure is not None:
        assert out.failed_at is not None
        step = steps[out.failed_at]
        if as_json:
            echo_json({"failed_step": out.failed_at + 1, "step": S.format_step(step),
                       "errno": out.failure.errno, "reason": out.failure.reason})
        else:
            click.echo(f"step {out.failed_at + 1} ({S.format_step(step)}) failed: {out.failure}",
                       err=True)
        sys.exit(EXIT_FAIL)
    write_tree(output, out.kernel.snapshot(source=f"simulate {history}"))
