"""`procforge capture PID [--namespace] [--no-probe] [-o TREE]`: read a live tree from /proc."""

from __future__ import annotations

import click

from procforge.capture import read_tree
from procforge.cli import main
from procforge.cli.common import write_tree
from procforge.errors import ProcforgeError, TreeError
from procforge.invariants import check_tree


@main.command()
@click.argument("pid", type=click.IntRange(min=1))
@click.option("--namespace", is_flag=True,
              help="Capture the whole pid namespace whose init is PID (numbers as seen inside it).")
@click.option("--no-probe", is_flag=True,
              help="Do not read child-subreaper flags with ptrace; record them as unknown (null).")
@click.option("--proc", "proc", default="/proc", show_default=True, metavar="DIR",
              help="The proc mount to read (PID is a number of its namespace).")
@click.option("-o", "--output", metavar="TREE", help="Write the tree here (default: stdout).")
def capture(pid: int, namespace: bool, no_probe: bool, proc: str, output: str | None) -> None:
    """Capture the live process tree rooted at PID: its descendants with their pids at every
    namespace level, parents, groups, sessions, states, zombies' wait statuses, threads, comm,
    and (unless --no-probe) child-subreaper flags.

    Ids the tree points to outside itself are listed as external when a process outside holds
    them, else they are dead and a restore recreates them. Exit 0, 1 if the tree kept changing,
    2 for a bad PID, 3 when the machine refuses (no /proc, no permission).
    """
    tree = read_tree(pid, namespace=namespace, probe_subreaper=not no_probe, proc=proc)
    try:
        check_tree(tree, source=f"capture of {pid}")
    except TreeError as e:  # the kernel cannot hold such a tree: our reading is at fault
        raise ProcforgeError(f"captured tree breaks an invariant (please report): {e}") from None
    write_tree(output, tree)
