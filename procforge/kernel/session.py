"""setsid and setpgid (`kernel/sys.c`: `ksys_setsid`, `sys_setpgid`).

Facts this relies on (semantics §2, §3):
- setsid fails with EPERM when the caller leads a session already, or when any task, zombies
  included, has a pgid equal to the caller's pid (`pid_task(sid, PIDTYPE_PGID)`); otherwise the
  caller leads a new session and a new group, both named by its pid;
- setpgid checks, in this order (`sys_setpgid`): pgid < 0 (EINVAL); the target is not visible in the
  caller's namespace (ESRCH); the target is a thread, not a group leader (EINVAL); the target is the
  caller's child in another session (EPERM) or has exec'd (EACCES; the model never execs); the
  target is neither the caller nor its child (ESRCH); the target leads a session (EPERM); pgid !=
  target and no task of the caller's session has that pgid, or the name is unknown (EPERM);
- a group stays joinable while any member, even an unreaped zombie, keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procforge.kernel.state import KernelRefusal, Process

if TYPE_CHECKING:
    from procforge.kernel.machine import Kernel


def do_setsid(k: Kernel, caller: Process) -> None:
    if caller.session_leader:
        raise KernelRefusal("EPERM", f"{caller.top} already leads session {caller.session.top}")
    if caller.pid.pgrp:
        member = next(iter(caller.pid.pgrp.values()))
        raise KernelRefusal("EPERM", f"group {caller.top} exists (task {member.top} is in it), so "
                                     f"{caller.top} cannot start a session named {caller.top}")
    caller.session_leader = True
    k.attach_session(caller, caller.pid)
    k.attach_pgrp(caller, caller.pid)


def do_setpgid(k: Kernel, caller: Process, target_nr: int, pgid_nr: int) -> None:
    """Arguments are top-level numbers; 0 means the caller (target) or the target (pgid)."""
    ns = caller.ns
    if pgid_nr < 0:
        raise KernelRefusal("EINVAL", f"pgid {pgid_nr} is negative")
    if target_nr == 0:
        target: Process | None = caller
    else:
        tpid = k.top_pid(target_nr)
        if tpid is None or tpid.nr_in(ns) is None or tpid.task is None:
            raise KernelRefusal("ESRCH", f"no task {target_nr} in {caller.top}'s namespace")
        target = tpid.task
        if target.pid is not tpid:
            raise KernelRefusal("EINVAL", f"{target_nr} is a thread of {target.top}, not a group "
                                          "leader")
    assert target is not None
    if pgid_nr == 0:
        pgid_nr = target.top
    if target.parent is caller:
        if target.session is not caller.session:
            raise KernelRefusal("EPERM", f"child {target.top} is in session {target.session.top}, "
                                         f"{caller.top} in {caller.session.top}")
    elif target is not caller:
        raise KernelRefusal("ESRCH", f"{target.top} is neither {caller.top} nor its child")
    if target.session_leader:
        raise KernelRefusal("EPERM", f"{target.top} leads session {target.top}")
    if pgid_nr != target.top:
        gpid = k.top_pid(pgid_nr)
        if gpid is None or gpid.nr_in(ns) is None:
            raise KernelRefusal("EPERM", f"no group {pgid_nr} visible in {caller.top}'s namespace")
        if not gpid.pgrp and not (gpid.external and k.external_pgrp_session.get(gpid.top)):
            raise KernelRefusal("EPERM", f"no task has pgid {pgid_nr}")
        if gpid.pgrp:
            g_session = next(iter(gpid.pgrp.values())).session
        else:
            g_session = k.top_pid(k.external_pgrp_session[gpid.top])
        if g_session is not caller.session:
            theirs = g_session.top if g_session else "?"
            raise KernelRefusal("EPERM", f"group {pgid_nr} is in session {theirs}, {caller.top} in "
                                         f"{caller.session.top}")
        new = gpid
    else:
        new = target.pid
    if target.pgrp is not new:
        k.attach_pgrp(target, new)
