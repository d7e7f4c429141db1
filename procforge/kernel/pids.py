"""Pid numbers: allocation (`alloc_pid`, `idr_alloc_cyclic`) and release (`free_pid`).

Facts this relies on (semantics §0, §1 set_tid):
- the allocator is cyclic per namespace: it searches from the cursor (last allocated + 1) up to
  pid_max - 1, then wraps to 1, or to RESERVED_PIDS (300) once the cursor has passed 300;
- a number given with set_tid is taken as is (`idr_alloc(tid, tid + 1)`) and does not move the
  cursor;
- alloc_pid walks levels from the innermost to the top; per level with a set_tid entry it checks the
  range (EINVAL), then that the level has a reaper unless the number is 1 (EINVAL), then capability
  (EPERM, which the model grants), then that the number is free (EEXIST); a failure frees the
  numbers taken so far, but a cyclic allocation has already advanced its cursor: the kernel keeps
  that;
- the size check comes first: more entries than the new task's absolute depth + 1 is EINVAL
  (`set_tid_size > ns->level + 1`); the levels above the model's top namespace (the host's, when
  the model is a fresh namespace) are real levels, checked last (the loop runs innermost first):
  measured on 6.18, `fork 1 pid=6/7` from a level-1 namespace gave EEXIST (host pid 6 taken) and
  `pid=400000/8` EINVAL (past the host's pid_max); the model does not know the host's pids, so
  such a step is refused as not decidable (errno None) once the model's own levels pass;
- a number is in use while any task, zombie or group/session reference holds its struct pid.
"""

from __future__ import annotations

from procforge.kernel.state import RESERVED_PIDS, KernelRefusal, Pid, PidNamespace


def _cyclic(ns: PidNamespace) -> int:
    """idr_alloc_cyclic over [pid_min, pid_max): returns the number or raises EAGAIN."""
    cursor = ns.cursor
    pid_min = RESERVED_PIDS if cursor > RESERVED_PIDS else 1
    start = cursor if cursor > pid_min else pid_min
    pids = ns.pids
    nr = start
    while nr < ns.pid_max and nr in pids:
        nr += 1
    if nr >= ns.pid_max and start > pid_min:
        nr = pid_min
        while nr < start and nr in pids:
            nr += 1
        if nr >= start:
            nr = ns.pid_max
    if nr >= ns.pid_max:
        raise KernelRefusal("EAGAIN", f"no free pid in the level-{ns.level} namespace (pid_max "
                                      f"{ns.pid_max})")
    ns.cursor = nr + 1
    return nr


def alloc_pid(ns: PidNamespace, set_tid: tuple[int, ...] | None, above: int = 0) -> Pid:
    """Allocate a struct pid in `ns` and all its ancestors.

    `set_tid` lists numbers top level first and may be shorter than the levels: it then names the
    innermost ones (clone3's set_tid array reversed). `above` is how many real levels lie above
    the model's top namespace (Kernel.base_level): set_tid may name them too.
    """
    if set_tid is None and ns.parent is None and ns.adding:
        # the common case, one level and the allocator's choice: same rules, no bookkeeping
        nr = _cyclic(ns)
        pid = Pid((nr,), ns)
        ns.pids[nr] = pid
        return pid
    levels = ns.level + 1
    given = set_tid or ()
    if len(given) > levels + above:
        raise KernelRefusal("EINVAL", f"set_tid has {len(given)} entries, the new task is at "
                                      f"depth {levels + above - 1} (at most {levels + above})")
    host = given[:len(given) - levels] if len(given) > levels else ()
    given = given[len(host):]
    nrs = [0] * levels
    first_given = levels - len(given)
    taken: list[tuple[PidNamespace, int]] = []
    level_ns = ns
    try:
        for i in range(levels - 1, -1, -1):
            if i >= first_given:
                tid = given[i - first_given]
                if tid < 1 or tid >= level_ns.pid_max:
                    raise KernelRefusal("EINVAL", f"set_tid {tid} is outside "
                                                  f"1..{level_ns.pid_max - 1} at level {i}")
                if tid != 1 and level_ns.reaper is None and not level_ns.reaper_outside:
                    raise KernelRefusal("EINVAL", f"set_tid {tid} at level {i}: that namespace has "
                                                  "no init yet, only 1 is allowed")
                if tid in level_ns.pids:
                    raise KernelRefusal("EEXIST", f"pid {tid} is in use at level {i} "
                                                  f"({_holder(level_ns.pids[tid])})")
                nr = tid
            else:
                nr = _cyclic(level_ns)
            nrs[i] = nr
            level_ns.pids[nr] = _PLACEHOLDER
            taken.append((level_ns, nr))
            level_ns = level_ns.parent  # type: ignore[assignment]
        if host:
            raise KernelRefusal(None, f"set_tid names {len(host)} level(s) above the model's top "
                                      f"namespace ({'/'.join(map(str, host))}): the kernel decides "
                                      "there by the host's pids, which the model does not know")
    except KernelRefusal:
        for lns, nr in taken:
            del lns.pids[nr]
        raise
    if not ns.adding:
        for lns, nr in taken:
            del lns.pids[nr]
        raise KernelRefusal("ENOMEM", "the namespace's init has died: no new processes "
                                      "(PIDNS_ADDING cleared)")
    pid = Pid(tuple(nrs), ns)
    for lns, nr in taken:
        lns.pids[nr] = pid
    return pid


_PLACEHOLDER = Pid((0,), PidNamespace(None))


def _holder(pid: Pid) -> str:
    if pid.task is not None:
        return f"task {pid.task.top}" if pid.task.pid is pid else f"a thread of {pid.task.top}"
    if pid.pgrp:
        return "a process group id"
    if pid.sessions:
        return "a session id"
    return "the environment"


def maybe_free(pid: Pid) -> None:
    """free_pid when nothing holds the struct pid any more."""
    if pid.in_use():
        return
    ns: PidNamespace | None = pid.ns
    for i in range(len(pid.nr) - 1, -1, -1):
        assert ns is not None
        if ns.pids.get(pid.nr[i]) is pid:
            del ns.pids[pid.nr[i]]
        ns = ns.parent


def find_vpid(ns: PidNamespace, nr: int) -> Pid | None:
    """find_vpid: the struct pid a number names in a namespace."""
    return ns.pids.get(nr)
