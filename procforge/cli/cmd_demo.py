"""`procforge demo`: the main job, end to end on the real kernel."""

from __future__ import annotations

import sys

import click

from procforge.cli import main
from procforge.errors import EXIT_FAIL


@main.command()
@click.option("--history", "show_history", is_flag=True, help="Print the history that builds the tree and stop.")
@click.option("--plan", "show_plan", is_flag=True, help="Also print the plan.")
def demo(show_history: bool, show_plan: bool) -> None:
    """Build a tree CRIU cannot restore, for real; capture, plan, restore and compare it.

    The tree has an orphan of a dead session under a child subreaper, a sibling made with
    CLONE_PARENT in another session, a group whose leader left it, a zombie that exited with 200,
    a nested pid namespace with a task killed by SIGTERM, a second thread and a stopped task.
    Everything runs in private pid namespaces that are removed before the command returns.
    Exit 0 when the restored tree is identical to the original, 1 otherwise.
    """
    from procforge import demo as D
    from procforge import steps as S

    if show_history:
        click.echo(D.HISTORY, nl=False)
        return
    res = D.run(say=click.echo)
    click.echo("")
    click.echo(D.side_by_side(res.original, res.restored, ("original (built by the history)",
                                                             "restored (built by the plan)")))
    click.echo("")
    if show_plan:
        click.echo("plan:\n" + S.format_text(res.plan.steps))
    t = res.timings
    click.echo(f"timings: build {t['build']:.2f} s, capture {t['capture']:.2f} s, plan "
               f"{t['plan'] * 1000:.1f} ms, restore+capture {t['restore']:.2f} s, total {t['total']:.2f} s")
    if res.identical:
        click.echo(f"verdict: IDENTICAL: {len(res.original)} tasks, every pid at every level, parent, "
                   "group, session, state, exit status, thread and subreaper flag match. "
                   "Both namespaces removed.")
    else:
        click.echo(f"verdict: DIFFERENT in {len(res.differences)} place(s):")
        for d in res.differences[:20]:
            click.echo(f"  {d}")
        sys.exit(EXIT_FAIL)
