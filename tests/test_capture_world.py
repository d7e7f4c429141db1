"""Real process trees for the capture tests, built inside a private pid namespace.

`World(script)` runs `unshare --fork --pid --mount-proc` with this file as the namespace's init; the
init runs `script` (Python, with the helpers below in scope), prints READY and idles. The test
captures, then `close()` SIGKILLs the init, which takes the whole namespace down: nothing is left.

Helpers in the script: spawn(body) forks a child that runs body() and idles (or exits, stops, loses
its leader thread, depending on what body returns), and returns once the child is in that state;
report(k, v) sends a value back; threads(n), setsid(), setpgid(p, g), subreaper(), die(), reap(p),
newns() (unshare CLONE_NEWPID: the next child is pid 1 of a new namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.abspath(__file__)

# ----------------------------------------------------------------------------- inside the namespace

_ready_fd: int | None = None
_libc = ctypes.CDLL(None, use_errno=True)
_kept_threads: list[threading.Thread] = []


def report(key: str, value: Any) -> None:
    os.write(1, (json.dumps({key: value}) + "\n").encode())


def _idle() -> None:
    while True:
        signal.pause()


def _wait_state(pid: int, states: str) -> None:
    while True:
        with open(f"/proc/{pid}/stat", "rb") as f:
            b = f.read()
        if chr(b[b.rfind(b")") + 2]) in states:
            return
        time.sleep(0.001)


def spawn(body: Any = None) -> int:
    """Fork; the child runs body() then acts on its result: None idles, 'stop' stops,
    'exit_leader' ends the leader thread (threads live on), an int exits with that code, a
    function is called after the child said it is ready (then it idles)."""
    global _ready_fd
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if _ready_fd is not None:
            os.close(_ready_fd)
        _ready_fd = w
        try:
            what = body() if body else None
        except BaseException as e:  # noqa: BLE001 - report and die, never return to the caller
            report("error", repr(e))
            os._exit(99)
        if isinstance(what, int) and not isinstance(what, bool):
            os._exit(what)
        if what == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os.write(w, {"stop": b"s", "exit_leader": b"l"}.get(what, b"r"))  # type: ignore[arg-type]
        if what == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        if what == "exit_leader":
            _libc.syscall(60, 0)  # SYS_exit: this thread only
        if callable(what):
            what()
        _idle()
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    if not got:  # exited: wait until it is a zombie, without reaping it
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    elif got == b"s":
        os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)
    elif got == b"l":
        _wait_state(pid, "Z")
    return pid


def threads(n: int) -> list[int]:
    tids: list[int] = []
    got = threading.Semaphore(0)

    def run() -> None:
        tids.append(threading.get_native_id())
        got.release()
        threading.Event().wait()

    for _ in range(n):
        t = threading.Thread(target=run, daemon=True)
        t.start()
        _kept_threads.append(t)
        got.acquire()
    return tids


def setsid() -> int:
    return os.setsid()


def setpgid(pid: int, pgid: int) -> None:
    os.setpgid(pid, pgid)


def subreaper(on: bool = True) -> None:
    if _libc.prctl(36, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def comm(name: str) -> None:
    _libc.prctl(15, name.encode(), 0, 0, 0)


def newns() -> None:
    if _libc.unshare(0x20000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


def reap(pid: int) -> int:
    return os.waitpid(pid, 0)[1]


def _main(script: str) -> None:
    env: dict[str, Any] = {k: v for k, v in globals().items() if not k.startswith("__")}
    try:
        exec(compile(script, "<world>", "exec"), env)  # noqa: S102 - test scripts only
    except BaseException as e:  # noqa: BLE001
        report("error", repr(e))
        os._exit(99)
    os.write(1, b"READY\n")
    _idle()


# -------------------------------------------------------------------------------- the test's side


class World:
    """A private pid namespace running `script`; use as a context manager."""

    def __init__(self, script: str, timeout: float = 30.0) -> None:
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the world
        self.proc = subprocess.Popen(
            ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child",
             sys.executable, HERE, script],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=self.err)
        self.info: dict[str, Any] = {}
        self.init = 0
        try:
            assert self.proc.stdout is not None
            deadline = time.monotonic() + timeout
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    self.err.seek(0)
                    raise RuntimeError(f"world died before READY: {self.info} {self.err.read()!r}")
                if line == b"READY\n":
                    break
                self.info.update(json.loads(line))
                if "error" in self.info:
                    raise RuntimeError(f"world script failed: {self.info['error']}")
                if time.monotonic() > deadline:
                    raise RuntimeError("world took too long")
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                self.init = int(f.read().split()[0])
        except BaseException:
            self.close()
            raise

    def next_report(self) -> dict[str, Any]:
        """The next value a task of the world reports after READY (blocks)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("world died")
        return json.loads(line)

    @property
    def proc_root(self) -> str:
        """The namespace's own /proc, seen from outside."""
        return f"/proc/{self.init}/root/proc"

    def close(self) -> None:
        if self.init:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init, signal.SIGKILL)
        else:
            self.proc.kill()  # unshare itself: --kill-child takes its child down
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _main(sys.argv[1])
