"""The executor: carries out step lists on the running kernel, in a fresh pid namespace or ours.

Kernel facts this relies on (linux-process-semantics.md; the C engine's essay has the rest):
- clone3's set_tid places a pid at every namespace level, checked against the user namespace that
  owns each level: creating a user namespace with the new pid namespace gives an unprivileged
  restorer that capability there; into the current namespace it takes root;
- a namespace init dies only by its own exit or a SIGKILL from outside, and takes every task of
  its namespace with it: killing the root removes a restored tree completely;
- restored tasks must be small: they are clones (CLONE_VM) of the compiled engine, not of Python.

API: `execute(steps, mode=..., into=...)` returns an `Execution` (results, root_pid, kill, detach,
hold); `restore(tree, steps)` (procforge.engine.restore) executes a plan and checks the result
against the tree read back from /proc.
"""

from procforge.engine.driver import Execution, StepFailed, StepResult, execute, model_explainer

__all__ = ["Execution", "StepFailed", "StepResult", "execute", "model_explainer"]
