"""`procforge diff A B [--shape] [--json]`: compare two trees."""

from __future__ import annotations

import sys

import click

from procforge import tree as T
from procforge.cli import main
from procforge.cli.common import echo_json
from procforge.diff import diff as exact_diff
from procforge.diff import shape_diff
from procforge.errors import EXIT_FAIL


@main.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--shape", is_flag=True,
              help="Equal up to a renaming of pids: same parents, groups, sessions, states.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def diff_cmd(a: str, b: str, shape: bool, as_json: bool) -> None:
    """Compare trees A and B ('-' for stdin): exactly, task by task, or with --shape up to a
    renaming of pids. Prints nothing when they are equal (or {"equal": true} with --json).

    A null child_subreaper or an empty comm matches anything (a capture may not know them).
    Exit 0 equal, 1 different, 2 invalid input.
    """
    ta, tb = T.load(a), T.load(b)
    if shape:
        r = shape_diff(ta, tb)
        if as_json:
            echo_json({"equal": r.equal, "mode": "shape", "reasons": list(r.reasons),
                       "mapping": {str(k): v for k, v in r.mapping.items()}})
        else:
            for line in r.reasons:
                click.echo(line)
        equal = r.equal
    else:
        d = exact_diff(ta, tb)
        if as_json:
            echo_json({"equal": not d, "mode": "exact", "differences": [x.to_json() for x in d]})
        else:
            for x in d:
                click.echo(str(x))
            if d:
                click.echo(f"{len(d)} difference{'s' * (len(d) > 1)}")
        equal = not d
    if not equal:
        sys.exit(EXIT_FAIL)
