"""`procforge show TREE`: the tree in the terminal, indented like `ps -ejH` / `pstree -gs`."""

from __future__ import annotations

import shutil
import sys

import click

from procforge import tree as T
from procforge.cli import main
from procforge.show import render, summary


@main.command()
@click.argument("tree_file", metavar="TREE")
@click.option("--depth", "-d", type=click.IntRange(min=0), metavar="N",
              help="Show N levels below the root; deeper subtrees become a count.")
@click.option("--limit", "-l", type=click.IntRange(min=1), metavar="N",
              help="Show at most N tasks (default: all).")
@click.option("--summary/--no-summary", "with_summary", default=True, show_default=True,
              help="End with a line of counts.")
@click.option("--pager/--no-pager", default=None,
              help="Page the output (default: when stdout is a terminal and the tree is taller).")
@click.option("--json", "as_json", is_flag=True, help="Print the tree file (checked) instead.")
def show(tree_file: str, depth: int | None, limit: int | None, with_summary: bool,
         pager: bool | None, as_json: bool) -> None:
    """Show TREE ('-' for stdin) with PID PPID PGID SID STATE columns and marks for zombies
    (with exit status), stopped tasks, subreapers, namespace inits (with inner pids), threads,
    and group or session ids whose leader is gone.

    Exit codes: 0 shown; 2 the file is invalid.
    """
    tree = T.load(tree_file)
    if as_json:
        click.echo(tree.dumps(), nl=False)
        return
    lines = list(render(tree, depth=depth, limit=limit))
    tail = [summary(tree)] if with_summary else []
    if pager is None:
        pager = sys.stdout.isatty() and len(lines) + len(tail) > shutil.get_terminal_size().lines
    if pager:
        click.echo_via_pager(_with_newlines(lines, tail))
        return
    # in chunks: one click.echo per line costs more than rendering it, on 100k-task trees
    chunk: list[str] = []
    for text in lines:
        chunk.append(text)
        if len(chunk) == 2000:
            click.echo("\n".join(chunk))
            chunk = []
    for text in [*chunk, *tail]:
        click.echo(text)


def _with_newlines(lines, tail):  # noqa: ANN001, ANN202 - generators of str
    for text in lines:
        yield text + "\n"
    for text in tail:
        yield text + "\n"
