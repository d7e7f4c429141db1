"""Pause Python's cyclic garbage collector around bulk work.

Building a million-task model allocates millions of long-lived objects; every full collection walks
all of them, which makes the work quadratic. Nothing here builds reference cycles that need
collecting before the work ends, so the collector is paused and restored afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
