"""The model's state: struct pid, pid namespaces and processes, as the kernel keeps them.

Facts this relies on (linux-process-semantics.md §0):
- a `struct pid` has one number per namespace level and stays allocated while any task uses it as
  its PID, or any process uses it as PGID or SID (`__change_pid` frees it only when all lists are
  empty);
- a process's parent is a thread, but /proc shows its tgid; every rule here works on thread groups,
  and threads matter only as holders of numbers and as "another live thread" on exit;
- zombies keep PGID and SID until they are reaped (`__unhash_process` detaches them at release).

The model's level 0 is the restorer's namespace; `base_level` says how deep that namespace really is
(1 for a fresh namespace under the host), which only matters for the 32-level limit.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIVE, ZOMBIE, STOPPED = "alive", "zombie", "stopped"
SIGCHLD, SIGKILL, SIGHUP = 17, 9, 1
MAX_PID_NS_LEVEL = 32  # include/linux/pid_namespace.h
RESERVED_PIDS = 300  # kernel/pid.c
PID_MAX_NS = 4194304  # PID_MAX_LIMIT: a new namespace's pid_max since 6.14


class Pid:
    """struct pid: numbers at levels 0..level, and who holds it."""

    __slots__ = ("nr", "ns", "task", "pgrp", "sessions", "external", "stopped")

    def __init__(self, nr: tuple[int, ...], ns: PidNamespace) -> None:
        self.nr = nr  # top level first
        self.ns = ns  # the deepest namespace it has a number in
        self.task: Process | None = None  # PIDTYPE_PID/TGID holder (leader) or thread owner
        self.pgrp: dict[int, Process] | None = None  # PIDTYPE_PGID: processes in this group
        self.sessions = 0  # PIDTYPE_SID holders
        self.external = False  # held by the environment, outside the model
        self.stopped = 0  # stopped processes in this group: has_stopped_jobs() in O(1)

    @property
    def top(self) -> int:
        return self.nr[0]

    def in_use(self) -> bool:
        return self.task is not None or bool(self.pgrp) or self.sessions > 0 or self.external

    def nr_in(self, ns: PidNamespace) -> int | None:
        """pid_nr_ns: the number in `ns`, or None when the pid is not visible there."""
        if ns.level < len(self.nr) and self.ns.chain[ns.level] is ns:
            return self.nr[ns.level]
        return None


class PidNamespace:
    __slots__ = ("level", "parent", "chain", "pids", "cursor", "pid_max", "reaper", "adding", "reaper_outside")

    def __init__(self, parent: PidNamespace | None, pid_max: int = PID_MAX_NS) -> None:
        self.parent = parent
        self.level = 0 if parent is None else parent.level + 1
        self.chain: tuple[PidNamespace, ...] = (parent.chain if parent else ()) + (self,)
        self.pids: dict[int, Pid] = {}  # the idr
        self.cursor = 0  # idr_next: the cyclic allocator starts here
        self.pid_max = pid_max
        self.reaper: Process | None = None  # child_reaper
        self.adding = True  # PIDNS_ADDING: cleared when the init dies
        self.reaper_outside = False  # the namespace's init exists but is not modelled (restore into it)

    def is_within(self, other: PidNamespace) -> bool:
        """This namespace is `other` or nested inside it."""
        return self.level >= other.level and self.chain[other.level] is other


class Process:
    """A thread group (the model's unit), with the leader's struct pid."""

    __slots__ = (
        "pid", "ns", "threads", "leader_alive", "parent", "children", "pgrp", "session",
        "session_leader", "state", "status", "is_subreaper", "has_subreaper", "sigchld_ign",
        "unkillable", "comm", "sess_attached",
    )

    def __init__(self, pid: Pid, ns: PidNamespace) -> None:
        self.pid = pid
        self.ns = ns  # task_active_pid_ns
        self.threads: list[Pid] = []  # non-leader threads
        self.leader_alive = True
        self.parent: Process | None = None  # real_parent's group; None: outside the model
        self.children: dict[int, Process] = {}  # by top pid, in the kernel's list order
        self.pgrp: Pid = pid
        self.session: Pid = pid
        self.session_leader = False  # signal->leader
        self.state = ALIVE
        self.status = 0  # wait status once a zombie
        self.is_subreaper = False
        self.has_subreaper = False
        self.sigchld_ign = False
        self.unkillable = False  # SIGNAL_UNKILLABLE: a namespace init
        self.comm = ""
        self.sess_attached = False

    @property
    def top(self) -> int:
        return self.pid.nr[0]

    def is_zombie(self) -> bool:
        """A real zombie: the group is dead (a zombie leader with live threads is not one)."""
        return self.state == ZOMBIE

    def __repr__(self) -> str:
        return f"<Process {self.top} {self.state}>"


def set_state(p: Process, state: str) -> None:
    """Change a process's state, keeping its group's count of stopped members (has_stopped_jobs)."""
    old = p.state
    if old == state:
        return
    if old == STOPPED:
        p.pgrp.stopped -= 1
    elif state == STOPPED:
        p.pgrp.stopped += 1
    p.state = state


@dataclass(frozen=True, slots=True)
class Failure:
    """A step the kernel refuses: the errno it returns (None when the step cannot even be issued,
    e.g. its caller is dead) and a reason in words naming the state it met."""

    errno: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.errno}: {self.reason}" if self.errno else f"not executable: {self.reason}"


class KernelRefusal(Exception):
    """Raised inside a rule to abort the step; the machine turns it into a Failure."""

    def __init__(self, errno: str | None, reason: str) -> None:
        super().__init__(reason)
        self.failure = Failure(errno, reason)
