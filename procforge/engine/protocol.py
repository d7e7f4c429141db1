"""The engine's wire format: steps in, results out (pure functions, no processes).

Why text: the engine is a small C program; lines of integers are trivial to parse there, easy to
read in a failing test, and a 10,000-task plan is a few hundred kilobytes.

In (stdin): ``PFE1 <steps> <record> <current> <userns> <root_pid>``, a scratch directory line ('-'
for none), then one line per step: ``<op> <actor> <a> <b> <flags> <npid> <pid...> [name]``.
Out (stdout): ``ROOT <host pid>``; ``R <index> <kind> <err> <extra> <npid> <pid...> [9 numbers of
the state met]`` per step; ``T <top> <host> <subreaper>`` per live process; ``ABORTED <index>``;
``DONE``. A fatal problem is a single ``FATAL <code> <message>`` line.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from procforge import steps as S

OPS: dict[type, int] = {
    S.Fork: 1, S.Thread: 2, S.Setsid: 3, S.Setpgid: 4, S.Subreaper: 5, S.Sigchld: 6, S.Exit: 7,
    S.ExitLeaderThread: 8, S.Wait: 9, S.Stop: 10, S.Comm: 11,
}
OK, ERRNO, NOT_EXECUTABLE, SKIPPED = 1, 2, 3, 4

# Why a step could not be issued at all (the model's Failure with errno None).
REASONS = {
    1: "there is no task {actor}",
    2: "task {actor} is a zombie",
    3: "task {actor} is stopped",
    4: "task {actor} has no other thread",
    5: "the leader thread of {actor} has already exited",
    6: "child {a} is not a zombie: waitpid would block",
    7: "signal {sig} does not kill: its default action is to ignore or to stop",
    8: "{actor} is a namespace init: it ignores signal {sig} (only SIGKILL from outside kills it)",
    9: "task {actor} died before it could act",
}


def encode(steps: Sequence[S.Step], *, record: bool, current: bool, userns: bool, root_pid: int,
           scratch: str | None) -> str:
    """The engine's input for a step list."""
    out = [f"PFE1 {len(steps)} {int(record)} {int(current)} {int(userns)} {root_pid}\n",
           (scratch or "-") + "\n"]
    for s in steps:
        out.append(_encode_step(s))
    return "".join(out)


def _pids(pids: tuple[int, ...] | None) -> str:
    return f"{len(pids)} " + " ".join(map(str, pids)) if pids else "0"


def _encode_step(s: S.Step) -> str:
    """One step as `op actor a b flags npid pid... name` (a hot path: 10^4 steps per restore)."""
    t = type(s)
    if t is S.Fork:
        flags = (1 if s.clone_parent else 0) | (2 if s.new_ns else 0)
        return f"1 {s.parent} 0 0 {flags} {_pids(s.pid)} -\n"
    if t is S.Thread:
        return f"2 {s.task} 0 0 0 {_pids(s.tid)} -\n"
    if t is S.Setpgid:
        return f"4 {s.caller} {s.target} {s.pgid} 0 0 -\n"
    if t is S.Subreaper:
        return f"5 {s.task} {int(s.on)} 0 0 0 -\n"
    if t is S.Sigchld:
        return f"6 {s.task} {int(s.ignore)} 0 0 0 -\n"
    if t is S.Exit:
        return f"7 {s.task} {s.status} 0 0 0 -\n"
    if t is S.Wait:
        return f"9 {s.parent} {s.child} 0 0 0 -\n"
    if t is S.Comm:
        return f"11 {s.task} 0 0 0 0 {s.name}\n"
    return f"{OPS[t]} {s.actor} 0 0 0 0 -\n"  # setsid, exit_leader_thread, stop


@dataclass(frozen=True, slots=True)
class Met:
    """What the failing step's caller saw, in its own namespace's numbers (from getpid etc.)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    probe: int = 0  # the id the step named (new pid, target, group or child), 0 for none
    probe_kill: int = 0  # kill(probe, 0): 0 or -errno
    probe_pgid: int = 0
    probe_sid: int = 0
    probe_group: int = 0  # kill(-probe, 0): 0 when a group with that id exists

    def describe(self) -> str:
        out = f"caller {self.pid} (ppid {self.ppid}, pgid {self.pgid}, sid {self.sid})"
        if self.probe > 0:
            p = self.probe
            if self.probe_kill == 0:
                out += f"; {p} is a live task (pgid {self.probe_pgid}, sid {self.probe_sid})"
            elif self.probe_kill == -_errno.EPERM:
                out += f"; {p} is a task it may not signal"
            else:
                out += f"; no task {p}"
            exists = "exists" if self.probe_group == 0 else "does not exist"
            out += f"; a group {p} {exists}"
        return out


@dataclass(frozen=True, slots=True)
class RawResult:
    index: int
    kind: int
    err: int
    extra: int
    pid: tuple[int, ...] = ()
    met: Met | None = None


@dataclass
class Report:
    root_host: int = 0
    results: list[RawResult] = field(default_factory=list)
    hosts: dict[int, int] = field(default_factory=dict)  # top pid -> host pid, live processes
    subreapers: set[int] = field(default_factory=set)  # processes the engine made subreapers
    aborted_at: int | None = None
    fatal: tuple[int, str] | None = None
    done: bool = False


def parse_line(rep: Report, line: str) -> None:
    """Add one output line to the report."""
    parts = line.split()
    if not parts:
        return
    tag = parts[0]
    if tag == "R":
        npid = int(parts[5])
        if npid == 0 and len(parts) == 6:
            rep.results.append(RawResult(int(parts[1]), int(parts[2]), int(parts[3]),
                                         int(parts[4])))
            return
        nums = list(map(int, parts[1:]))
        pid = tuple(nums[5:5 + npid])
        tail = nums[5 + npid:]
        rep.results.append(RawResult(nums[0], nums[1], nums[2], nums[3], pid,
                                     Met(*tail) if len(tail) == 9 else None))
    elif tag == "T":
        top, host, sub = int(parts[1]), int(parts[2]), parts[3] != "0"
        rep.hosts[top] = host
        if sub:
            rep.subreapers.add(top)
    elif tag == "ROOT":
        rep.root_host = int(parts[1])
    elif tag == "DONE":
        rep.done = True
    elif tag == "ABORTED":
        rep.aborted_at = int(parts[1])
    elif tag == "FATAL":
        code, _, msg = line.strip().partition(" ")[2].partition(" ")
        rep.fatal = (int(code), msg.strip())


def parse(lines: Iterable[str]) -> Report:
    rep = Report()
    for line in lines:
        if line.strip():
            parse_line(rep, line)
    return rep


def errno_name(n: int) -> str:
    return _errno.errorcode.get(n, f"errno {n}")


def reason(raw: RawResult, step: S.Step) -> str:
    """The words for a step that could not be issued."""
    sig = step.status & 0x7F if isinstance(step, S.Exit) else 0
    a = step.child if isinstance(step, S.Wait) else 0
    return REASONS.get(raw.err, f"reason {raw.err}").format(actor=step.actor, a=a, sig=sig)
