"""A tree for human eyes: indented like `ps -ejH` / `pstree -gs`, with the facts ps does not show.

ps shows pid, group and session, but not what a restore must get right and a reader easily misses:
a zombie's wait status, a subreaper, a namespace init and the pids its tasks have inside, threads, a
leader that exited first, and group or session ids whose leader is gone (held only by members).
Each gets a bracketed mark after the name. Children are listed by pid, like pstree. Big trees
stay usable with a depth limit, a line limit and a summary line of counts.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator

from procforge.tree import STOPPED, ZOMBIE, Task, Tree

HEADER = f"{'PID':>8} {'PPID':>8} {'PGID':>8} {'SID':>8} {'STATE':<8} COMMAND"
INDENT = "  "


def signal_name(sig: int) -> str:
    """SIGKILL for 9; SIGRTMIN+n for real-time signals; SIG<n> for numbers Python does not name."""
    rtmin = int(getattr(signal, "SIGRTMIN", 34))
    if sig >= rtmin:
        return "SIGRTMIN" if sig == rtmin else f"SIGRTMIN+{sig - rtmin}"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


def describe_status(status: int) -> str:
    """A raw wait status in words: `exit 200`, `killed SIGKILL`, `killed SIGSEGV (core dumped)`."""
    sig = status & 0x7F
    if sig:
        return f"killed {signal_name(sig)}" + (" (core dumped)" if status & 0x80 else "")
    return f"exit {status >> 8}"


def _levels(nrs: tuple[int, ...]) -> str:
    return "/".join(str(x) for x in nrs)


def marks(tree: Tree, t: Task) -> list[str]:
    """The bracketed notes after a task's name, most important first."""
    out: list[str] = []
    if t.state == ZOMBIE:
        out.append(f"zombie: {describe_status(t.exit_status or 0)}")
    elif t.state == STOPPED:
        out.append("stopped")
    if tree.is_ns_init(t.id):
        out.append(f"ns init, pid {_levels(t.pid)}")
    elif t.level > 0:
        out.append(f"pid {_levels(t.pid)}")
    if t.child_subreaper:
        out.append("subreaper")
    elif t.child_subreaper is None:
        out.append("subreaper?")
    if t.threads:
        tids = " ".join(_levels(th) for th in t.threads[:4])
        more = f" +{len(t.threads) - 4}" if len(t.threads) > 4 else ""
        out.append(f"{len(t.threads)} thread{'s' * (len(t.threads) > 1)}: {tids}{more}")
    if t.leader_exited:
        out.append("leader thread exited")
    for what, nr in (("pgid", t.pgid), ("sid", t.sid)):
        if nr == 0:
            continue
        if nr in tree.external:
            out.append(f"{what} {nr} external")
        elif nr not in tree.tasks:
            out.append(f"{what} {nr}: leader gone")
    return out


def line(tree: Tree, t: Task, depth: int) -> str:
    name = t.comm or "-"
    note = "".join(f" [{m}]" for m in marks(tree, t))
    state = t.state
    return (f"{t.id:>8} {t.ppid:>8} {t.pgid:>8} {t.sid:>8} {state:<8} "
            f"{INDENT * depth}{name}{note}")


def _count_below(ch: dict[int, list[int]], pid: int) -> int:
    n, stack = 0, list(ch[pid])
    while stack:
        x = stack.pop()
        n += 1
        stack.extend(ch[x])
    return n


def render(tree: Tree, depth: int | None = None, limit: int | None = None) -> Iterator[str]:
    """Lines of the indented tree: a header, tasks parents first with children by pid, and a line
    saying what a depth or line limit left out. Iterative: chains may be thousands deep."""
    yield HEADER
    ch = {p: sorted(c) for p, c in tree.children().items()}
    roots = sorted(t.id for t in tree if t.ppid not in tree.tasks)
    stack: list[tuple[int, int]] = [(r, 0) for r in reversed(roots)]
    printed = accounted = 0  # tasks on a line; tasks on a line or in a "below depth" count
    while stack:
        pid, d = stack.pop()
        if limit is not None and printed >= limit:
            yield f"... {len(tree) - accounted} more tasks (raise --limit to see them)"
            return
        yield line(tree, tree[pid], d)
        printed += 1
        accounted += 1
        kids = ch[pid]
        if not kids:
            continue
        if depth is not None and d >= depth:
            hidden = _count_below(ch, pid)
            accounted += hidden
            yield f"{'':>8} {'':>8} {'':>8} {'':>8} {'':<8} {INDENT * (d + 1)}... {hidden} " \
                  f"descendant{'s' * (hidden > 1)} below depth {depth}"
            continue
        stack.extend((c, d + 1) for c in reversed(kids))


def summary(tree: Tree) -> str:
    """One line of counts, so that a big tree's shape is visible without reading it."""
    states = Counter(t.state for t in tree)
    threads = sum(len(t.threads) for t in tree)
    groups = {t.pgid for t in tree if t.pgid}
    sessions = {t.sid for t in tree if t.sid}
    dead_groups = sum(1 for g in groups if g not in tree.tasks and g not in tree.external)
    dead_sessions = sum(1 for s in sessions if s not in tree.tasks and s not in tree.external)
    subreapers = sum(1 for t in tree if t.child_subreaper)
    depth = _max_depth(tree)
    deepest = max((t.level for t in tree), default=0)
    parts = [
        f"{_n(len(tree), 'task')}: {states['alive']} alive, {states['stopped']} stopped, "
        f"{_n(states['zombie'], 'zombie')}",
        _n(threads, "thread"),
        f"{_n(len(tree.namespaces), 'namespace')} (deepest level {deepest})",
        f"{_n(len(sessions), 'session')}, {_n(len(groups), 'group')}",
        f"{_n(dead_groups, 'group')} and {_n(dead_sessions, 'session')} without their leader",
        _n(subreapers, "subreaper"),
        f"depth {depth}",
    ]
    return "; ".join(parts)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _max_depth(tree: Tree) -> int:
    ch = tree.children()
    best = 0
    stack = [(t.id, 0) for t in tree if t.ppid not in tree.tasks]
    while stack:
        pid, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in ch[pid])
    return best
