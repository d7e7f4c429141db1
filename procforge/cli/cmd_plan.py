"""`procforge plan`, `check` and `verify`: the planner from the command line."""

from __future__ import annotations

import sys

import click

from procforge import planner
from procforge import steps as S
from procforge import tree as T
from procforge.cli import main
from procforge.cli.common import echo_json, write_text
from procforge.errors import EXIT_FAIL
from procforge.planner.deps import critical_path, to_dot


@main.command()
@click.argument("tree_file", metavar="TREE")
@click.option("-o", "--output", metavar="PLAN", help="Write the plan here (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default="text",
              show_default=True, help="Step list as text or JSON, or the dependency graph (Graphviz).")
@click.option("--stats", is_flag=True, help="Print helpers, steps and the helper lower bound on stderr.")
def plan(tree_file: str, output: str | None, fmt: str, stats: bool) -> None:
    """Compute the steps that rebuild TREE, checked on the kernel model.

    The plan runs from a state holding only the tree's root: a fresh pid namespace's init (pid 1),
    or, for a root that is no init, a task the restorer made with the root's pid. Exit 1 when the tree
    is unreachable (with the reason), 2 on invalid input.
    """
    tree = T.load(tree_file)
    try:
        p = planner.plan(tree)
    except planner.Unreachable as u:
        click.echo(f"procforge: {tree_file}: unreachable: {u.reason}", err=True)
        sys.exit(EXIT_FAIL)
    text = to_dot(p.steps, tree_file) if fmt == "dot" else S.dumps(p.steps, fmt)
    write_text(output, text)
    if stats:
        st = p.stats()
        st["critical_path"] = critical_path(p.steps)
        lines = [f"tasks {st['tasks']}, steps {st['steps']}, helpers {st['helpers']} "
                 f"(lower bound {st['helper_lower_bound']}), critical path {st['critical_path']} steps"]
        for label, key in (("bound", "bound_reasons"), ("above bound", "above_bound_because")):
            reasons: list[str] = st[key]  # type: ignore[assignment]
            lines += [f"  {label}: {r}" for r in reasons[:10]]
            if len(reasons) > 10:
                lines.append(f"  {label}: ... and {len(reasons) - 10} more")
        click.echo("\n".join(lines), err=True)


@main.command()
@click.argument("tree_file", metavar="TREE")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def check(tree_file: str, as_json: bool) -> None:
    """Say whether TREE can be built by system calls, and why not.

    Exit 0 reachable, 1 unreachable, 2 invalid input.
    """
    tree = T.load(tree_file)
    v = planner.check(tree)
    if as_json:
        echo_json({"reachable": v.reachable, "reason": v.reason, "tasks": list(v.tasks)})
    elif v.reachable:
        click.echo(f"{tree_file}: reachable")
    else:
        click.echo(f"{tree_file}: unreachable: {v.reason}")
    sys.exit(0 if v.reachable else EXIT_FAIL)


@main.command()
@click.argument("tree_file", metavar="TREE")
@click.argument("plan_file", metavar="PLAN")
def verify(tree_file: str, plan_file: str) -> None:
    """Run PLAN in the kernel model from TREE's start state and list the differences from TREE.

    Exit 0 when the result is exactly TREE, 1 when a step fails or anything differs.
    """
    tree = T.load(tree_file)
    steps = S.load(plan_file)
    r = planner.verify(tree, steps)
    if r.failure is not None:
        assert r.failed_at is not None
        click.echo(f"step {r.failed_at + 1} ({S.format_step(steps[r.failed_at])}) failed: {r.failure}")
        sys.exit(EXIT_FAIL)
    if r.differences:
        click.echo("\n".join(r.differences))
        sys.exit(EXIT_FAIL)
    click.echo(f"{plan_file}: {len(steps)} steps build {tree_file} exactly")
