"""procforge: recreate Linux process trees exactly.

Library API (the CLI is a thin layer over it):
- `load_tree(path)`, `Tree`, `Task`: the tree and its file format (procforge.tree);
- `parse_steps(text)`, `format_steps(steps)`: the step language (procforge.steps);
- `simulate(steps, start=None)`: run steps in the kernel model (procforge.kernel);
- `generate(tasks, seed)`: a random reachable tree and the history that built it;
- `plan(tree)`, `check(tree)`, `verify(tree, steps)`: the planner (procforge.planner).
"""

from procforge.generate import generate
from procforge.kernel import Failure, Kernel, simulate
from procforge.planner import Unreachable, check, plan, verify
from procforge.steps import dumps as format_steps
from procforge.steps import loads as parse_steps
from procforge.tree import Task, Tree
from procforge.tree import load as load_tree

__version__ = "0.1.0"
__all__ = ["Failure", "Kernel", "Task", "Tree", "Unreachable", "check", "format_steps", "generate", "load_tree",
           "parse_steps", "plan", "simulate", "verify"]
