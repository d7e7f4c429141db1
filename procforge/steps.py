"""The step language: one system call (or kernel event we cause) per step.

One language serves restore plans, generated histories and the executor. Tasks are named by their
top-level pid (as the restorer's namespace sees them); a step's effect is defined by the kernel model
(procforge.kernel). Two forms, which round-trip exactly:

text, one step a line (`#` starts a comment)::

    fork 1 pid=7                # clone3 with set_tid; pid=7/1 gives every level, top first
    fork 7 pid=1 newns          # a partial list names the innermost levels (set_tid's suffix)
    fork 3 clone_parent         # no pid: the kernel's allocator chooses
    thread 7 tid=9
    setsid 7
    setpgid 7 8 7               # caller, target, pgid (0 = self / = target, as in setpgid(2))
    subreaper 7 on
    sigchld 7 ignore            # SIGCHLD disposition: ignore or default
    exit 7 code=200             # or signal=9, or signal=6+core
    exit_leader_thread 7        # the leader thread exits, the other threads live on
    wait 1 7                    # 1 reaps its zombie child 7
    stop 7                      # SIGSTOP
    comm 7 worker

JSON: ``{"format": "procforge-steps/1", "steps": [{"op": "fork", "parent": 1, ...}, ...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from procforge.errors import StepSyntaxError

FORMAT = "procforge-steps/1"


@dataclass(frozen=True, slots=True)
class Fork:
    op: ClassVar[str] = "fork"
    parent: int
    pid: tuple[int, ...] | None = None
    clone_parent: bool = False
    new_ns: bool = False

    @property
    def actor(self) -> int:
        return self.parent


@dataclass(frozen=True, slots=True)
class Thread:
    op: ClassVar[str] = "thread"
    task: int
    tid: tuple[int, ...] | None = None

    @property
    def actor(self) -> int:
        return self.task


@dataclass(frozen=True, slots=True)
class Setsid:
    op: ClassVar[str] = "setsid"
    task: int

    @property
    def actor(self) -> int:
        return self.task


@dataclass(frozen=True, slots=True)
class Setpgid:
    op: ClassVar[str] = "setpgid"
    caller: int
    target: int
    pgid: int

    @property
    def actor(self) -> int:
        return self.caller


@dataclass(frozen=True, slots=True)
class Subreaper:
    op: ClassVar[str] = "subreaper"
    task: int
    on: bool = True

    @property
    def actor(self) -> int:
        return self.task


@dataclass(frozen=True, slots=True)
class Sigchld:
    op: ClassVar[str] = "sigchld"
    task: int
    ignore: bool = True

    @property
    def actor(self) -> int:
        return self.task


@dataclass(frozen=True, slots=True)
class Exit:
    """The whole process ends with a raw wait status: code << 8, or a signal (| 0x80 core)."""

    op: ClassVar[str] = "exit"
    task: int
    status: int = 0

    @property
    def actor(self) -> int:
        return self.task

    @staticmethod
    def code(task: int, code: int) -> Exit:
        return Exit(task, (code & 0xFF) << 8)

    @staticmethod
    def signal(task: int, sig: int, core: bool = False) -> Exit:
        return Exit(task, sig | (0x80 if core else 0))


@dataclass(frozen=True, slots=True)
class ExitLeaderThread:
    op: ClassVar[str] = "exit_leader_thread"
    task: int

    @property
    def actor(self) -> int:
        return self.task


@dataclass(frozen=True, slots=True)
class Wait:
    op: ClassVar[str] = "wait"
    parent: int
    child: int

    @property
    def actor(self) -> int:
        return self.parent


@dataclass(frozen=True, slots=True)
class Stop:
    op: ClassVar[str] = "stop"
    task: int

    @property
    def actor(self) -> int:
        return self.task


@dataclass(frozen=True, slots=True)
class Comm:
    op: ClassVar[str] = "comm"
    task: int
    name: str

    @property
    def actor(self) -> int:
        return self.task


Step = Fork | Thread | Setsid | Setpgid | Subreaper | Sigchld | Exit | ExitLeaderThread | Wait | Stop | Comm
STEP_TYPES: dict[str, type] = {
    c.op: c
    for c in (Fork, Thread, Setsid, Setpgid, Subreaper, Sigchld, Exit, ExitLeaderThread, Wait, Stop, Comm)
}


# ---------------------------------------------------------------------------------------- text form


def _pids(s: tuple[int, ...]) -> str:
    return "/".join(str(x) for x in s)


def format_status(status: int) -> str:
    sig = status & 0x7F
    if sig:
        return f"signal={sig}" + ("+core" if status & 0x80 else "")
    return f"code={status >> 8}"


def format_step(s: Step) -> str:
    """One step as a line of the text form."""
    match s:
        case Fork(parent, pid, cp, newns):
            out = f"fork {parent}"
            if pid is not None:
                out += f" pid={_pids(pid)}"
            if cp:
                out += " clone_parent"
            if newns:
                out += " newns"
            return out
        case Thread(task, tid):
            return f"thread {task}" + (f" tid={_pids(tid)}" if tid is not None else "")
        case Setsid(task):
            return f"setsid {task}"
        case Setpgid(caller, target, pgid):
            return f"setpgid {caller} {target} {pgid}"
        case Subreaper(task, on):
            return f"subreaper {task} {'on' if on else 'off'}"
        case Sigchld(task, ignore):
            return f"sigchld {task} {'ignore' if ignore else 'default'}"
        case Exit(task, status):
            return f"exit {task} {format_status(status)}"
        case ExitLeaderThread(task):
            return f"exit_leader_thread {task}"
        case Wait(parent, child):
            return f"wait {parent} {child}"
        case Stop(task):
            return f"stop {task}"
        case Comm(task, name):
            return f"comm {task} {name}"
    raise TypeError(f"not a step: {s!r}")


def format_text(steps: Iterable[Step]) -> str:
    return "".join(format_step(s) + "\n" for s in steps)


def _int(tok: str, what: str, where: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise StepSyntaxError(f"{where}: {what} must be a number, not {tok!r}") from None
    if v < 0:
        raise StepSyntaxError(f"{where}: {what} must not be negative")
    return v


def _pidlist(tok: str, where: str) -> tuple[int, ...]:
    parts = tuple(_int(x, "pid", where) for x in tok.split("/"))
    if any(p == 0 for p in parts) or not parts:
        raise StepSyntaxError(f"{where}: pids must be positive: {tok!r}")
    return parts


def _parse_status(tok: str, where: str) -> int:
    key, _, val = tok.partition("=")
    if key == "code":
        code = _int(val, "exit code", where)
        if code > 255:
            raise StepSyntaxError(f"{where}: exit code {code} is above 255")
        return code << 8
    if key == "signal":
        core = val.endswith("+core")
        sig = _int(val.removesuffix("+core"), "signal", where)
        if not 1 <= sig <= 64:
            raise StepSyntaxError(f"{where}: signal {sig} is not between 1 and 64")
        return sig | (0x80 if core else 0)
    raise StepSyntaxError(f"{where}: expected code=N or signal=N, not {tok!r}")


def parse_line(line: str, where: str = "step") -> Step | None:
    """Parse one line; None for blank and comment lines."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    op, *args = text.split()
    n = len(args)

    def need(k: int, usage: str) -> None:
        if n != k:
            raise StepSyntaxError(f"{where}: usage: {usage}")

    match op:
        case "fork":
            if n < 1:
                raise StepSyntaxError(f"{where}: usage: fork PARENT [pid=N[/N...]] [clone_parent] [newns]")
            parent = _int(args[0], "parent", where)
            pid, cp, newns = None, False, False
            for a in args[1:]:
                if a.startswith("pid="):
                    pid = _pidlist(a[4:], where)
                elif a == "clone_parent":
                    cp = True
                elif a == "newns":
                    newns = True
                else:
                    raise StepSyntaxError(f"{where}: unknown fork option {a!r}")
            return Fork(parent, pid, cp, newns)
        case "thread":
            if n not in (1, 2) or (n == 2 and not args[1].startswith("tid=")):
                raise StepSyntaxError(f"{where}: usage: thread TASK [tid=N[/N...]]")
            return Thread(_int(args[0], "task", where), _pidlist(args[1][4:], where) if n == 2 else None)
        case "setsid" | "exit_leader_thread" | "stop":
            need(1, f"{op} TASK")
            return STEP_TYPES[op](_int(args[0], "task", where))
        case "setpgid":
            need(3, "setpgid CALLER TARGET PGID")
            return Setpgid(*(_int(a, f, where) for a, f in zip(args, ("caller", "target", "pgid"), strict=True)))
        case "subreaper":
            need(2, "subreaper TASK on|off")
            if args[1] not in ("on", "off"):
                raise StepSyntaxError(f"{where}: subreaper takes on or off, not {args[1]!r}")
            return Subreaper(_int(args[0], "task", where), args[1] == "on")
        case "sigchld":
            need(2, "sigchld TASK ignore|default")
            if args[1] not in ("ignore", "default"):
                raise StepSyntaxError(f"{where}: sigchld takes ignore or default, not {args[1]!r}")
            return Sigchld(_int(args[0], "task", where), args[1] == "ignore")
        case "exit":
            need(2, "exit TASK code=N|signal=N[+core]")
            return Exit(_int(args[0], "task", where), _parse_status(args[1], where))
        case "wait":
            need(2, "wait PARENT CHILD")
            return Wait(_int(args[0], "parent", where), _int(args[1], "child", where))
        case "comm":
            need(2, "comm TASK NAME")
            if len(args[1]) > 15:
                raise StepSyntaxError(f"{where}: comm {args[1]!r} is longer than 15 bytes")
            return Comm(_int(args[0], "task", where), args[1])
    raise StepSyntaxError(f"{where}: unknown step {op!r} (known: {', '.join(STEP_TYPES)})")


def parse_text(text: str, source: str = "steps") -> list[Step]:
    out: list[Step] = []
    for i, line in enumerate(text.splitlines(), 1):
        s = parse_line(line, f"{source}:{i}")
        if s is not None:
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------- JSON form


def step_to_json(s: Step) -> dict[str, Any]:
    d: dict[str, Any] = {"op": s.op}
    for k, v in asdict(s).items():
        d[k] = list(v) if isinstance(v, tuple) else v
    return d


def step_from_json(d: Any, where: str) -> Step:
    if not isinstance(d, dict) or "op" not in d:
        raise StepSyntaxError(f"{where}: a step is an object with an 'op'")
    cls = STEP_TYPES.get(d["op"])
    if cls is None:
        raise StepSyntaxError(f"{where}: unknown step {d['op']!r}")
    names = {f.name: f for f in fields(cls)}
    extra = set(d) - set(names) - {"op"}
    if extra:
        raise StepSyntaxError(f"{where}: unknown field {sorted(extra)[0]!r} for {d['op']}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k == "op":
            continue
        if k in ("pid", "tid"):
            if v is not None and (not isinstance(v, list) or not v or not all(type(x) is int and x > 0 for x in v)):
                raise StepSyntaxError(f"{where}: field {k} must be a list of positive pids or null")
            v = tuple(v) if v is not None else None
        elif k in ("clone_parent", "new_ns", "on", "ignore"):
            if type(v) is not bool:
                raise StepSyntaxError(f"{where}: field {k} must be true or false")
        elif k == "name":
            if (not isinstance(v, str) or len(v) > 15 or not v or "#" in v
                    or any(c.isspace() for c in v)):
                # no '#' either: the text form reads it as a comment, and both forms must agree
                raise StepSyntaxError(f"{where}: field name must be 1 to 15 characters without spaces or '#'")
        elif type(v) is not int or v < 0:
            raise StepSyntaxError(f"{where}: field {k} must be a non-negative integer")
        kw[k] = v
    try:
        return cls(**kw)
    except TypeError as e:
        raise StepSyntaxError(f"{where}: {d['op']}: {e}") from None


def to_json(steps: Sequence[Step]) -> dict[str, Any]:
    return {"format": FORMAT, "steps": [step_to_json(s) for s in steps]}


def from_json(data: Any, source: str = "steps") -> list[Step]:
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("steps"), list):
        items = data["steps"]
    else:
        raise StepSyntaxError(f"{source}: expected {{'format': {FORMAT!r}, 'steps': [...]}}")
    return [step_from_json(d, f"{source}: step {i}") for i, d in enumerate(items, 1)]


def loads(text: str, source: str = "steps") -> list[Step]:
    """Parse either form: JSON when the text starts with '{' or '[', else the text form."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise StepSyntaxError(f"{source}: not JSON: {e.msg} at line {e.lineno}") from None
        return from_json(data, source)
    return parse_text(text, source)


def load(path: str) -> list[Step]:
    from procforge.textio import read_text

    try:
        text = read_text(path)
    except UnicodeDecodeError:
        raise StepSyntaxError(f"{path}: not a text file") from None
    except OSError as e:
        raise StepSyntaxError(f"{path}: cannot read: {e.strerror}") from None
    return loads(text, path)


def dumps(steps: Sequence[Step], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(to_json(steps), indent=None, separators=(",", ":")) + "\n"
    return format_text(steps)
