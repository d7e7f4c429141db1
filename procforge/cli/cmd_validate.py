"""`procforge validate TREE`: format and invariants."""

from __future__ import annotations

import click

from procforge import tree as T
from procforge.cli import main


@main.command()
@click.argument("tree_file", metavar="TREE")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def validate(tree_file: str, quiet: bool) -> None:
    """Check a tree file's format and invariants; exit 0, or 2 with the first problem."""
    tree = T.load(tree_file)
    if not quiet:
        zombies = sum(1 for t in tree if t.state == T.ZOMBIE)
        threads = sum(len(t.threads) for t in tree)
        click.echo(f"{tree_file}: valid: {len(tree)} tasks, {threads} threads, {zombies} zombies, "
                   f"{len(tree.namespaces)} namespaces")
