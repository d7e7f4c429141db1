"""fork, clone3 and threads (`kernel/fork.c`: `copy_process`; `kernel/pid_namespace.c`).

Facts this relies on (semantics §1):
- the child's parent is the caller, or the caller's parent with CLONE_PARENT; pgid and sid come from
  the caller in both cases; `is_child_subreaper` starts at 0 and `has_child_subreaper` is the
  caller's `has || is` (`copy_signal`); signal dispositions (our SIGCHLD one) are copied;
- CLONE_PARENT from a process with SIGNAL_UNKILLABLE (any namespace init) is EINVAL, checked before
  namespaces are made;
- CLONE_NEWPID makes a namespace one level down (ENOSPC past level 32); its first process is pid 1,
  its child_reaper and unkillable;
- CLONE_THREAD allocates a pid in the caller's namespace and shares everything of the group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procforge.kernel.pids import alloc_pid
from procforge.kernel.state import MAX_PID_NS_LEVEL, ZOMBIE, KernelRefusal, PidNamespace, Process

if TYPE_CHECKING:
    from procforge.kernel.machine import Kernel


def do_fork(k: Kernel, caller: Process, set_tid: tuple[int, ...] | None, clone_parent: bool,
            new_ns: bool) -> Process:
    if clone_parent and caller.unkillable:
        raise KernelRefusal("EINVAL", f"CLONE_PARENT from {caller.top}, a namespace init "
                                      "(SIGNAL_UNKILLABLE)")
    if clone_parent and caller.parent is None:
        raise KernelRefusal(None, f"CLONE_PARENT from {caller.top}: the child's parent would be "
                                  "outside the tree (the restorer)")
    ns = caller.ns
    if new_ns:
        if k.base_level + ns.level + 1 > MAX_PID_NS_LEVEL:
            raise KernelRefusal("ENOSPC", "a new namespace would be at level "
                                          f"{k.base_level + ns.level + 1}, past {MAX_PID_NS_LEVEL}")
        ns = PidNamespace(ns)
    pid = alloc_pid(ns, set_tid, k.base_level)
    nr = pid.nr[0]
    child = Process(pid, ns)
    pid.task = child
    parent = caller.parent if clone_parent else caller
    child.parent = parent
    if parent is not None:
        parent.children[nr] = child
    # the caller's group and session (attach_pgrp/attach_session, inlined: the hot path of
    # replaying big plans; a new child is alive, so the group's stopped count is unchanged)
    group = caller.pgrp
    assert group.pgrp is not None
    group.pgrp[nr] = child
    child.pgrp = group
    session = caller.session
    session.sessions += 1
    child.session = session
    child.sess_attached = True
    child.has_subreaper = caller.has_subreaper or caller.is_subreaper
    child.sigchld_ign = caller.sigchld_ign
    child.comm = caller.comm
    if new_ns:
        ns.reaper = child
        child.unkillable = True
    k.procs[nr] = child
    return child


def do_thread(k: Kernel, caller: Process, set_tid: tuple[int, ...] | None) -> None:
    if caller.state == ZOMBIE:
        raise KernelRefusal(None, f"task {caller.top} is a zombie")
    pid = alloc_pid(caller.ns, set_tid, k.base_level)
    pid.task = caller
    caller.threads.append(pid)
