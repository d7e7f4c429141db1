"""Helpers shared by the model's rule tests: run steps that must succeed, or one that must fail."""

from __future__ import annotations

from procforge import steps as S
from procforge.kernel import Kernel


def run(text: str, k: Kernel | None = None) -> Kernel:
    """Run steps (text form) that must all succeed, from a fresh namespace or `k`."""
    k = k or Kernel.fresh()
    r = k.run(S.parse_text(text))
    assert r is None, f"step {r[0] + 1} failed: {r[1]}"
    return k


def fail(k: Kernel, line: str | S.Step) -> str | None:
    """Apply a step that must fail; the tree must be unchanged. Returns the errno."""
    before = k.snapshot()
    step = S.parse_line(line) if isinstance(line, str) else line
    assert step is not None
    f = k.apply(step)
    assert f is not None, f"{line!r} succeeded"
    assert k.snapshot() == before
    return f.errno
