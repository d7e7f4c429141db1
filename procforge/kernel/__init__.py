"""The kernel model: applies steps to a state with Linux 6.18's rules (see each module's essay)."""

from procforge.kernel.machine import Kernel, Outcome, simulate
from procforge.kernel.state import Failure

__all__ = ["Failure", "Kernel", "Outcome", "simulate"]
