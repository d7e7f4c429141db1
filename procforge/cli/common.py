"""Helpers shared by the command modules: output of trees and steps to files or stdout."""

from __future__ import annotations

import json
from typing import Any

import click

from procforge import steps as S
from procforge import tree as T


def write_text(path: str | None, text: str) -> None:
    """Write to a file, or to stdout when path is None or '-'."""
    if path is None or path == "-":
        click.echo(text, nl=False)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def write_tree(path: str | None, tree: T.Tree) -> None:
    write_text(path, tree.dumps())


def write_steps(path: str | None, steps: list[S.Step], fmt: str = "text") -> None:
    write_text(path, S.dumps(steps, fmt))


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=1))
