"""Run a step list on the real kernel through the compiled engine, and hold what it built.

The engine (pf-engine, built from engine.c by the package's build) does all per-task work: the
restored tasks are clones of that small program, never of this interpreter (a forked Python costs
over a millisecond and deep chains of its large image grow super-linearly). This module writes the
plan to the engine's stdin, reads each step's result back, and keeps the engine as the holder of
the tree: the engine is the root's parent until it is told to detach (leave the tree running) or to
kill it. If this process dies, the engine reads end-of-file and removes the tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from procforge import steps as S
from procforge.engine import protocol as P
from procforge.errors import EXIT_INVALID, EnvironmentProblem, InvalidInput, ProcforgeError
from procforge.kernel.state import Failure

BINARY = Path(__file__).resolve().parent / "bin" / "pf-engine"
MODES = ("abort", "record")
INTO = ("new-namespace", "current")


@dataclass(frozen=True, slots=True)
class StepResult:
    """What the kernel said to one step."""

    index: int  # 0-based position in the step list
    step: S.Step
    outcome: str  # "ok", "errno", "not-executable" or "skipped" (after an abort)
    errno: str | None = None  # the system call's errno name, e.g. "EEXIST"
    reason: str = ""  # words for a step that could not be issued
    pid: tuple[int, ...] | None = None  # fork/thread: the new task's numbers, top level first
    status: int | None = None  # wait: the wait status reaped
    met: P.Met | None = None  # failing system call: what its caller saw

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def as_failure(self) -> Failure | None:
        """The model's form (procforge.kernel.Failure), for comparing kernel and model."""
        if self.outcome == "errno":
            return Failure(self.errno, f"the kernel said {self.errno}")
        if self.outcome == "not-executable":
            return Failure(None, self.reason)
        return None

    def describe(self) -> str:
        head = f"step {self.index + 1} ({S.format_step(self.step)})"
        if self.outcome == "ok":
            extra = f" pid={'/'.join(map(str, self.pid))}" if self.pid else ""
            extra += f" status={self.status}" if self.status is not None else ""
            return f"{head}: ok{extra}"
        if self.outcome == "errno":
            return f"{head}: {self.errno}" + (f" (met: {self.met.describe()})" if self.met else "")
        if self.outcome == "skipped":
            return f"{head}: skipped"
        return f"{head}: not executable: {self.reason}"


class StepFailed(ProcforgeError):
    """A step failed in abort mode; everything the run created is already gone."""

    def __init__(self, result: StepResult, model_reason: str | None = None,
                 root_pid: int = 0) -> None:
        self.result = result
        self.model_reason = model_reason
        self.root_pid = root_pid  # host pid the root had (already removed)
        r = result
        what = r.errno if r.outcome == "errno" else "not executable"
        msg = f"step {r.index + 1} ({S.format_step(r.step)}) failed: {what}"
        if r.outcome == "not-executable":
            msg += f": {r.reason}"
        elif r.met is not None:
            msg += f"; the state it met: {r.met.describe()}"
        if model_reason:
            msg += f"; the model says: {model_reason}"
        super().__init__(msg + "; everything created was removed")


class Execution:
    """A handle on what a run built: host pid of the root, per-step results, kill and detach."""

    def __init__(self, proc: subprocess.Popen[bytes], report: P.Report, results: list[StepResult],
                 into: str) -> None:
        self._proc = proc
        self.report = report
        self.results = results
        self.into = into
        self.root_pid = report.root_host  # in the caller's (the engine's) pid namespace
        self.hosts = dict(report.hosts)  # top-level pid -> host pid, for live processes
        self.subreapers = set(report.subreapers)
        self._state = "held"
        self._root_fd: int | None = None
        try:
            self._root_fd = os.pidfd_open(self.root_pid)
        except OSError:
            self._root_fd = None

    @property
    def state(self) -> str:
        """held (the engine holds it), detached, or removed."""
        return self._state

    def alive(self) -> bool:
        """The root has not exited (a zombie root counts as exited)."""
        if self._root_fd is None:
            return False
        import select

        r, _, _ = select.select([self._root_fd], [], [], 0)
        return not r

    def _command(self, c: bytes, want: str) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(c)
            self._proc.stdin.flush()
            line = self._proc.stdout.readline().decode()
        except (BrokenPipeError, OSError):
            line = ""
        self._proc.wait()
        if line.strip() != want:
            raise ProcforgeError(f"the engine did not confirm ({line.strip() or 'no answer'})")

    def kill(self) -> None:
        """Remove the tree (every task dies). Idempotent. A detached tree in a new namespace dies
        with its root; one in the current namespace is killed task by task, by the host pids of
        the end of the run."""
        if self._state == "removed":
            return
        if self._state == "held" and self._proc.poll() is None:
            self._command(b"K", "KILLED")
        elif self.into == "new-namespace":
            if self._root_fd is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._root_fd, signal.SIGKILL)
        else:
            for host in self.hosts.values():
                with contextlib.suppress(OSError):
                    os.kill(host, signal.SIGKILL)
        self._close_pipes()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None
        self._state = "removed"

    def detach(self) -> int:
        """Leave the tree running (the root is reparented to the nearest subreaper or init) and
        return the host pid of the root."""
        if self._state == "held":
            self._command(b"D", "DETACHED")
            self._state = "detached"
            self._close_pipes()
        return self.root_pid

    def hold(self, ready: Callable[[], None] | None = None) -> None:
        """Block until SIGINT or SIGTERM (or the root's death), then remove the tree. `ready` is
        called once the signals are caught (to announce that the tree is held)."""
        import select

        got: list[int] = []

        def stop(signum: int, frame: object) -> None:
            got.append(signum)
            raise _Interrupted

        old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if ready is not None:
                ready()
            while not got:
                if self._root_fd is None:
                    signal.pause()
                else:
                    select.select([self._root_fd], [], [])
                    break
        except _Interrupted:
            pass
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.kill()

    def _close_pipes(self) -> None:
        for f in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> Execution:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == "held":
            self.kill()


class _Interrupted(Exception):
    pass


def engine_path() -> Path:
    if not BINARY.is_file() or not os.access(BINARY, os.X_OK):
        raise EnvironmentProblem(
            f"the engine {BINARY} is not built: reinstall procforge (pip install .) with gcc")
    return BINARY


def has_set_tid_capability() -> bool:
    """CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in our effective set (set_tid in our namespace)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << 21) or caps & (1 << 40))
    except OSError:
        pass
    return os.geteuid() == 0


def execute(steps: Sequence[S.Step], *, mode: str = "abort", into: str = "new-namespace",
            root_pid: int | None = None, userns: bool | None = None,
            explain: Callable[[int], str | None] | None = None) -> Execution:
    """Run `steps` on the real kernel from a state holding only the root.

    new-namespace: the root is pid 1 of a fresh pid namespace (with a user namespace that maps the
    caller to root when `userns`, by default when the caller lacks the capability). current: the
    root is `root_pid` in the caller's namespace (needs the capability). The root starts in the
    caller's process group and session. mode "abort": the first failing step removes everything and
    raises StepFailed; "record": every step runs and its result is kept. `explain(i)` may return
    the model's reason for a failure at step i, to add to the message.
    """
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if into not in INTO:
        raise InvalidInput(f"into must be one of {', '.join(INTO)}, not {into!r}")
    current = into == "current"
    if explain is None and not current:
        explain = model_explainer(steps)
    if current:
        if not has_set_tid_capability():
            raise EnvironmentProblem("--into current needs root (CAP_SYS_ADMIN or "
                                     "CAP_CHECKPOINT_RESTORE) to place pids with set_tid")
        userns = False
    else:
        if root_pid not in (None, 1):
            raise InvalidInput(f"in a new namespace the root is pid 1, not {root_pid}")
        if userns is None:
            userns = not has_set_tid_capability()
    scratch = None
    if any(isinstance(s, S.Exit) and s.status & 0x80 for s in steps):
        scratch = tempfile.mkdtemp(prefix="procforge-core-")  # core dumps land here, then go
    text = P.encode(steps, record=mode == "record", current=current, userns=bool(userns),
                    root_pid=root_pid or 0, scratch=scratch)
    try:
        proc = subprocess.Popen([str(engine_path())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd="/", close_fds=True)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(text.encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        report = _read_report(proc.stdout)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if report.fatal is not None or not report.done:
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        proc.kill()
        proc.wait()
        if report.fatal is None and report.root_host:
            _remove_orphan(report.root_host, current)
        code, msg = report.fatal or (70, "the engine stopped without a report: "
                                             + (err or "no output"))
        if code == EXIT_INVALID:
            raise InvalidInput(f"engine: {msg}")
        if code == 3:
            raise EnvironmentProblem(msg)
        raise ProcforgeError(f"engine: {msg}")
    results = _results(steps, report)
    if report.aborted_at is not None:
        # the engine has removed the tree and reaped the root: its number may be anyone's now
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
        bad = results[report.aborted_at]
        raise StepFailed(bad, explain(bad.index) if explain else None, report.root_host)
    return Execution(proc, report, results, into)


def _remove_orphan(pid: int, current: bool) -> None:
    """The engine died without cleaning up: kill the root it reported, if that pid is still the
    init of a pid namespace (a number reused by someone else is left alone)."""
    if current:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        if len(nspid) > 1 and nspid[-1] == "1":
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except (OSError, StopIteration):
        pass
    finally:
        os.close(fd)


def _read_report(out: IO[bytes]) -> P.Report:
    rep = P.Report()
    parse = P.parse_line
    for raw in out:
        parse(rep, raw.decode())
        if rep.done or rep.fatal is not None:
            break
    return rep


def _results(steps: Sequence[S.Step], rep: P.Report) -> list[StepResult]:
    out: list[StepResult] = []
    add = out.append
    for raw in rep.results:
        s = steps[raw.index]
        if raw.kind == P.OK:
            add(StepResult(raw.index, s, "ok", None, "", raw.pid or None,
                           raw.extra if type(s) is S.Wait else None))
        elif raw.kind == P.ERRNO:
            add(StepResult(raw.index, s, "errno", P.errno_name(raw.err), met=raw.met))
        elif raw.kind == P.NOT_EXECUTABLE:
            add(StepResult(raw.index, s, "not-executable", reason=P.reason(raw, s)))
        else:
            add(StepResult(raw.index, s, "skipped"))
    return out


def model_explainer(steps: Sequence[S.Step], start: Callable[[], object] | None = None
                    ) -> Callable[[int], str | None]:
    """explain(i): the model's reason for step i failing after steps[:i] (None if it succeeds)."""

    def explain(i: int) -> str | None:
        from procforge.kernel.machine import Kernel

        k = start() if start else Kernel.fresh()
        assert isinstance(k, Kernel)
        if k.run(steps[:i]) is not None:
            return None
        f = k.apply(steps[i])
        return str(f) if f is not None else None

    return explain
