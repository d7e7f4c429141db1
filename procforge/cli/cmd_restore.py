"""`procforge restore TREE [--plan PLAN] [--into new-namespace|current] [--detach]`."""

from __future__ import annotations

import sys

import click

from procforge import steps as S
from procforge import tree as T
from procforge.cli import main
from procforge.engine.restore import Mismatch, restore


def write_pidfile(path: str | None, pid: int) -> None:
    if path:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{pid}\n")


@main.command("restore")
@click.argument("tree_file", metavar="TREE")
@click.option("--plan", "plan_file", metavar="PLAN",
              help="Run these steps (text or JSON form) instead of the planner's plan.")
@click.option("--into", type=click.Choice(["new-namespace", "current"]), default="new-namespace",
              show_default=True,
              help="A fresh pid namespace (the root is its pid 1), or this one (needs root).")
@click.option("--detach", is_flag=True,
              help="Leave the tree running and print the root's host pid alone on stdout.")
@click.option("--pidfile", metavar="FILE", help="Write the root's host pid to FILE.")
@click.option("--probe-subreaper", is_flag=True,
              help="Read subreaper flags back with ptrace instead of trusting the engine's prctl.")
def restore_cmd(tree_file: str, plan_file: str | None, into: str, detach: bool,
                pidfile: str | None, probe_subreaper: bool) -> None:
    """Build TREE on the running kernel with its exact pids, groups, sessions, zombies, stopped
    tasks, threads and namespaces; read it back from /proc and compare it with TREE.

    Without --detach the tree is held until SIGINT or SIGTERM, then removed. Exit 0 restored and
    identical; 1 a step failed or the result differs (printed; nothing is left behind); 2 bad
    input; 3 the machine cannot do it (privilege, pids taken; nothing was created).
    """
    tree = T.load(tree_file)
    steps = S.load(plan_file) if plan_file else None
    try:
        r = restore(tree, steps, into=into, probe_subreaper=probe_subreaper)
    except Mismatch as m:
        for line in m.differences:
            click.echo(line)
        raise
    pid = r.root_pid
    write_pidfile(pidfile, pid)
    if detach:
        r.execution.detach()
        click.echo(pid)
        return
    secs = r.timings.get("total", 0.0)

    def ready() -> None:
        click.echo(f"restored {len(tree)} tasks in {secs:.2f}s, identical to {tree_file}; "
                   f"root pid {pid}; holding it until interrupted (Ctrl-C removes it)", err=True)
        sys.stderr.flush()

    r.execution.hold(ready)
