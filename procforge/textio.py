"""Reading a text file or standard input ('-'), the one way every loader does it."""

from __future__ import annotations

import sys


def read_text(path: str) -> str:
    """The file's text; OSError and UnicodeDecodeError reach the caller, which names the file."""
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()
