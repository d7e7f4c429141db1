"""`procforge generate --tasks N --seed S [--features LIST] [-o TREE] [--history FILE]`."""

from __future__ import annotations

import click

from procforge.cli import main
from procforge.cli.common import write_steps, write_tree
from procforge.generate import FEATURES, generate, parse_features


@main.command(name="generate")
@click.option("--tasks", "-n", type=click.IntRange(min=1), required=True, metavar="N",
              help="Tasks in the final tree (zombies included; threads not counted).")
@click.option("--seed", "-s", type=int, default=0, show_default=True, metavar="S",
              help="Random seed: the same seed and options give the same tree and history.")
@click.option("--features", "-f", metavar="LIST",
              help="Comma list of: all (default), none, " + ", ".join(FEATURES)
              + "; '-name' turns one off (all,-threads).")
@click.option("-o", "--output", metavar="TREE", help="Write the tree here (default: stdout).")
@click.option("--history", metavar="FILE",
              help="Also write the steps that built it (JSON form if FILE ends in .json).")
def generate_cmd(tasks: int, seed: int, features: str | None, output: str | None,
                 history: str | None) -> None:
    """Generate a random reachable tree by running a random valid history in the kernel model.

    Starts from a fresh pid namespace holding only its init (pid 1) and applies random steps that
    the model accepts until the namespace holds N tasks. `procforge simulate HISTORY` replays the
    history to the same tree. Exit codes: 0 done; 2 invalid options.
    """
    feats = parse_features(features)
    tree, steps = generate(tasks, seed, feats)
    if history is not None:
        write_steps(history, steps, "json" if history.endswith(".json") else "text")
    write_tree(output, tree)
    if output not in (None, "-"):
        zombies = sum(1 for t in tree if t.state == "zombie")
        click.echo(f"{output}: {len(tree)} tasks ({zombies} zombies, {len(tree.namespaces)} "
                   f"namespaces) from {len(steps)} steps", err=True)
