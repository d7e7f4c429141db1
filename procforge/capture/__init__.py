"""Reading real process trees: from /proc (`proc.read_tree`) and from CRIU checkpoints (`criu`).

This is the imperative shell's eyes: nothing in tree/steps/kernel/planner imports it.
"""

from procforge.capture.proc import CaptureUnstable, read_tree

__all__ = ["CaptureUnstable", "read_tree"]
