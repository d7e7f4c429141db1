"""`procforge import-criu DIR [-o TREE]`: a CRIU checkpoint directory as a tree."""

from __future__ import annotations

import click

from procforge.capture.criu import import_dir
from procforge.cli import main
from procforge.cli.common import write_tree
from procforge.invariants import check_tree


@main.command("import-criu")
@click.argument("directory", metavar="DIR")
@click.option("-o", "--output", metavar="TREE", help="Write the tree here (default: stdout).")
def import_criu(directory: str, output: str | None) -> None:
    """Read the process tree of the CRIU checkpoint in DIR (pstree.img, core-*.img, ids-*.img,
    inventory.img), without CRIU installed: tasks, threads, zombies and their wait status,
    stopped tasks, child-subreaper flags and the pid namespace.

    Exit 0, or 2 with one line naming the file when an image is missing, foreign, truncated or
    corrupt, or the tree it describes breaks an invariant.
    """
    tree = import_dir(directory)
    check_tree(tree, source=directory)
    write_tree(output, tree)
