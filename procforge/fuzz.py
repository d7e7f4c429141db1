"""The kernel judges the model: run random histories on the real kernel and in the model, compare.

Kernel facts this relies on (docs/restore.md, docs/fuzz.md):
- the engine runs a step list in a fresh pid namespace whose init is pid 1, and in record mode
  reports every step's result: ok with the numbers a fork or thread got, the errno, or "not
  executable" (the model's Failure with errno None); a wait reports the status it reaped;
- pids the kernel chooses come from its cyclic allocator (`alloc_pid`), the same in every fresh
  namespace: the model's allocator must give the same numbers, so a history that names tasks by
  the model's numbers names the same tasks on the kernel;
- the engine cannot pause between steps (the plan is read whole), so the tree is compared after
  the last step, after a few random prefixes, and, when some comparison disagrees, after the
  prefixes a bisection picks: the first step after which the trees differ is found in log(n) runs;
- /proc shows no subreaper flag (the capture is run without the ptrace probe: null, a wildcard) and
  the engine's comm is its own, so comm is not compared.

This module is the imperative shell: it starts engines and reads /proc. Each history costs one
engine run (about 20 ms for 30 tasks) plus one per prefix checked.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from procforge import steps as S
from procforge.diff import diff
from procforge.errors import ProcforgeError
from procforge.generate import FEATURES, generate
from procforge.kernel.machine import Kernel
from procforge.kernel.state import ZOMBIE, Failure, Process
from procforge.tree import Tree

# Signals for the mutations: ones that ignore or stop, ones that kill, with and without a core.
_NO_KILL = (17, 18, 19, 20, 21, 22, 23, 28)
_KILL = (1, 2, 9, 13, 15, 3, 6, 11)


def answer(f: Failure | None) -> str:
    """A step's result as compared: ok, the errno name, or 'not executable'."""
    if f is None:
        return "ok"
    return f.errno or "not executable"


@dataclass(frozen=True)
class Disagreement:
    """The first point where the kernel and the model part: step `index` (0-based) of `steps`."""

    steps: tuple[S.Step, ...]  # the history up to and including the step (replayable)
    index: int
    kind: str  # "result" (errno, pid or wait status) or "tree" (the state after the step)
    kernel: str
    model: str
    origin: str = ""  # how the history was made (seed, tasks, mutations)
    kernel_pids: tuple[str, ...] = ()  # per step: what the kernel gave a fork or thread
    # the number a dead thread had was still taken: the thread had not finished release_task
    # (free_pids runs after the engine was woken), an executor timing artefact, not the model's
    late_thread: bool = False

    def signature(self) -> str:
        """A class of disagreement: the step's kind and the two answers' first words."""
        op = self.steps[self.index].op
        return f"{self.kind}:{op}:{self.kernel.split(';')[0][:60]}/{self.model.split(';')[0][:60]}"

    def text(self) -> str:
        """The history as a replayable step file, the disagreement in comments at the top."""
        step = S.format_step(self.steps[self.index])
        head = [f"# procforge fuzz: disagreement at step {self.index + 1} ({step}), {self.kind}",
                f"# kernel: {self.kernel}", f"# model:  {self.model}"]
        if self.origin:
            head.append(f"# history: {self.origin}")
        head.append("# replay: procforge execute THIS_FILE --record --no-hold; "
                    "procforge simulate THIS_FILE")
        lines = []
        for i, s in enumerate(self.steps):
            extra = self.kernel_pids[i] if i < len(self.kernel_pids) else ""
            lines.append(S.format_step(s) + (f"  # kernel: {extra}" if extra else ""))
        return "\n".join(head + lines) + "\n"


@dataclass
class Stats:
    histories: int = 0
    mutated: int = 0
    steps: int = 0
    failing_steps: int = 0  # steps the kernel refused (errno or not executable), all agreed or not
    prefix_runs: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    timing: list[Disagreement] = field(default_factory=list)  # late_thread or not reproducible
    engine_errors: list[tuple[str, str, tuple[S.Step, ...]]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        self.histories += other.histories
        self.mutated += other.mutated
        self.steps += other.steps
        self.failing_steps += other.failing_steps
        self.prefix_runs += other.prefix_runs
        self.disagreements.extend(other.disagreements)
        self.timing.extend(other.timing)


# ------------------------------------------------------------------------------------ comparing


def _comparable(t: Tree) -> Tree:
    """The tree without comm (the engine's tasks carry its name, the model only what steps set)."""
    return dataclasses.replace(
        t, tasks={x: dataclasses.replace(task, comm="") for x, task in t.tasks.items()},
        source="")


def _tree_differences(kernel_tree: Tree, model_tree: Tree) -> list[str]:
    return [str(d).replace("(A)", "(kernel)").replace("(B)", "(model)")
            for d in diff(_comparable(kernel_tree), _comparable(model_tree))]


def _model_step(k: Kernel, step: S.Step) -> tuple[Failure | None, tuple[int, ...] | None,
                                                     int | None]:
    """Apply a step to the model: its failure, the numbers a fork or thread got, the status a wait
    reaped."""
    status = None
    if type(step) is S.Wait:
        c = k.procs.get(step.child)
        status = c.status if c is not None and c.state == ZOMBIE else None
    f = k.apply(step)
    if f is not None:
        return f, None, None
    if type(step) is S.Fork:
        return None, k.procs[next(reversed(k.procs))].pid.nr, None
    if type(step) is S.Thread:
        return None, k.procs[step.task].threads[-1].nr, None
    return None, None, status


def _run_kernel(steps: Sequence[S.Step]) -> tuple[list, Tree]:  # noqa: ANN401
    """Execute in record mode; the per-step results and the tree read back. Nothing survives."""
    from procforge.capture import read_tree
    from procforge.engine import execute

    with execute(steps, mode="record") as ex:
        results = ex.results
        tree = read_tree(ex.root_pid, namespace=True)
    return results, tree


def _model_tree(steps: Sequence[S.Step]) -> Tree:
    k = Kernel.fresh()
    for s in steps:
        k.apply(s)
    return k.snapshot()


class _Judge:
    """Compares one history; counts the engine runs it needed."""

    def __init__(self, steps: Sequence[S.Step], origin: str) -> None:
        self.steps = list(steps)
        self.origin = origin
        self.runs = 0
        self.kernel_pids: tuple[str, ...] = ()
        self.thread_tids: set[int] = set()

    def trees_differ(self, n: int) -> list[str]:
        """Differences between kernel and model after the first n steps ([] when equal)."""
        self.runs += 1
        _, kt = _run_kernel(self.steps[:n])
        return _tree_differences(kt, _model_tree(self.steps[:n]))

    def first_tree_difference(self, lo: int, hi: int, hi_diff: list[str]) -> tuple[int, list[str]]:
        """Prefix lengths: trees agree after `lo` steps, differ after `hi`. The smallest n with a
        difference (bisection: a step after which they part), and that difference."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            d = self.trees_differ(mid)
            if d:
                hi, hi_diff = mid, d
            else:
                lo = mid
        return hi, hi_diff

    def disagreement(self, index: int, kind: str, kernel: str, model: str) -> Disagreement:
        step = self.steps[index]
        late = False
        if kind == "result" and type(step) in (S.Fork, S.Thread):
            named = step.pid if type(step) is S.Fork else step.tid
            nums = {int(x) for x in model.removeprefix("pid=").split("/")[:1] if x.isdigit()}
            if named:
                nums.add(named[0])
            late = bool(nums & self.thread_tids) and kernel.startswith(("EEXIST", "pid="))
        return Disagreement(tuple(self.steps[:index + 1]), index, kind, kernel, model, self.origin,
                            self.kernel_pids[:index + 1], late)

    def judge(self, cuts: int, rng: random.Random) -> tuple[Disagreement | None, int]:
        """The first disagreement of the history (None), and how many steps the kernel refused."""
        self.runs += 1
        results, final = _run_kernel(self.steps)
        k = Kernel.fresh()
        first: tuple[int, str, str] | None = None
        refused = 0
        pids: list[str] = []
        for r in results:
            f, pid, status = _model_step(k, r.step)
            kf = r.as_failure()
            refused += kf is not None
            pids.append("pid=" + "/".join(map(str, r.pid)) if r.pid else
                        (answer(kf) if kf is not None else ""))
            if first is not None:
                continue
            ka, ma = answer(kf), answer(f)
            if ka != ma:
                first = (r.index, f"{ka}" + (f" ({r.describe()})" if kf else ""),
                         f"{ma}" + (f" ({f.reason})" if f else ""))
            elif r.ok and r.pid and pid is not None and tuple(r.pid) != tuple(pid):
                first = (r.index, "pid=" + "/".join(map(str, r.pid)),
                         "pid=" + "/".join(map(str, pid)))
            elif r.ok and r.status is not None and status is not None and r.status != status:
                first = (r.index, f"status {r.status}", f"status {status}")
        self.kernel_pids = tuple(pids)
        self.thread_tids = {r.pid[0] for r in results if r.ok and r.pid and type(r.step) is S.Thread}
        n = len(self.steps)
        if first is not None:
            i = first[0]
            d = self.trees_differ(i) if i > 0 else []
            if d:
                at, d = self.first_tree_difference(0, i, d)
                return self.disagreement(at - 1, "tree", "; ".join(d), "(see kernel)"), refused
            return self.disagreement(i, "result", first[1], first[2]), refused
        final_diff = _tree_differences(final, k.snapshot())
        if final_diff:
            at, d = self.first_tree_difference(0, n, final_diff)
            return self.disagreement(at - 1, "tree", "; ".join(d), "(see kernel)"), refused
        for cut in sorted(rng.sample(range(1, n), min(cuts, n - 1))) if n > 1 else ():
            d = self.trees_differ(cut)
            if d:
                at, d = self.first_tree_difference(0, cut, d)
                return self.disagreement(at - 1, "tree", "; ".join(d), "(see kernel)"), refused
        return None, refused


def judge(steps: Sequence[S.Step], *, cuts: int = 0, seed: int = 0,
          origin: str = "") -> tuple[Disagreement | None, int]:
    """Compare one history, kernel against model: the first disagreement or None, and the number
    of engine runs it took. `cuts` random prefixes are compared too (a state that parts and meets
    again shows only there)."""
    j = _Judge(steps, origin)
    d, _ = j.judge(cuts, random.Random(seed))
    return d, j.runs


# ------------------------------------------------------------------------------------- mutating


def mutate(steps: Sequence[S.Step], rng: random.Random, count: int) -> list[S.Step]:
    """Insert `count` steps that are wrong on purpose (wrong caller, wrong target, a taken pid,
    setsid of a group leader, CLONE_PARENT from an init, signals that do not kill, ...) or random
    steps on interesting numbers, at random places of a valid history. What follows a mutation is
    kept: a mutation that succeeds shifts the rest, whose steps then fail in their own ways.

    Steps whose outcome the model cannot decide, or that would make the kernel wait for ever (an
    init whose namespace cannot empty), are dropped: they compare nothing."""
    at = sorted(rng.randrange(len(steps) + 1) for _ in range(count))
    k = Kernel.fresh()
    out: list[S.Step] = []

    def add(s: S.Step | None) -> None:
        if s is None or traps_an_init(k, s):
            return
        f = k.apply(s)
        if f is not None and f.errno is None and ("for ever" in f.reason or "host" in f.reason):
            return
        out.append(s)

    j = 0
    for i, s in enumerate(list(steps) + [None]):  # type: ignore[list-item]
        while j < len(at) and at[j] == i:
            add(_mutation(k, rng))
            j += 1
        if s is not None:
            add(s)
    return out


def traps_an_init(k: Kernel, s: S.Step) -> bool:
    """A setpgid that would move a namespace init into a group named after a pid of its own
    namespace. Allowed, but then the init can never die: zap_pid_ns_processes waits for that pid,
    which the init holds itself, and the engine's teardown would leave it stuck for good."""
    if type(s) is not S.Setpgid:
        return False
    caller = k.procs.get(s.caller)
    tpid = k.top_pid(s.target) if s.target else (caller.pid if caller else None)
    target = tpid.task if tpid is not None else None
    if target is None or not target.unkillable:
        return False
    g = k.top_pid(s.pgid) if s.pgid else target.pid
    return g is not None and g is not target.pid and g.ns.is_within(target.ns)


def sanitize(steps: Sequence[S.Step]) -> list[S.Step]:
    """The history without steps that would trap an init (traps_an_init)."""
    k = Kernel.fresh()
    out = []
    for s in steps:
        if not traps_an_init(k, s):
            k.apply(s)
            out.append(s)
    return out


def _mutation(k: Kernel, rng: random.Random) -> S.Step | None:
    procs = list(k.procs.values())
    live = [p for p in procs if p.state != ZOMBIE]
    if not live:
        return None
    m = rng.choice(_MUTATIONS)
    return m(k, rng, procs, live)


def _pick(rng: random.Random, xs: Sequence[Process]) -> Process | None:
    return rng.choice(xs) if xs else None


def _taken_nr(rng: random.Random, p: Process) -> int:
    """A number in use in p's namespace (a task, a thread, a group or session id, a zombie)."""
    return rng.choice(list(p.ns.pids))


def _numbers(k: Kernel, rng: random.Random) -> int:
    """An interesting top-level number: in use, just free, or far off."""
    r = rng.random()
    if r < 0.7 and k.top_ns.pids:
        return rng.choice(list(k.top_ns.pids))
    if r < 0.9:
        return k.top_ns.cursor + rng.randrange(3)
    return rng.randrange(1, 5000)


def _m_fork_taken(k: Kernel, rng: random.Random, procs: list[Process],
                  live: list[Process]) -> S.Step | None:
    p = rng.choice(live)
    return S.Fork(p.top, (_taken_nr(rng, p),), rng.random() < 0.2 and not p.unkillable)


def _m_thread_taken(k: Kernel, rng: random.Random, procs: list[Process],
                    live: list[Process]) -> S.Step | None:
    p = rng.choice(live)
    return S.Thread(p.top, (_taken_nr(rng, p),))


def _m_clone_parent_init(k: Kernel, rng: random.Random, procs: list[Process],
                         live: list[Process]) -> S.Step | None:
    p = _pick(rng, [x for x in live if x.unkillable]) or k.procs.get(1)
    return S.Fork(p.top, None, True, rng.random() < 0.3) if p else None


def _m_set_tid_bad(k: Kernel, rng: random.Random, procs: list[Process],
                   live: list[Process]) -> S.Step | None:
    """Too many numbers (past the absolute depth) or a new namespace not starting at 1."""
    p = rng.choice(live)
    depth = k.base_level + p.ns.level + 1  # entries allowed for a child in p's namespace
    if rng.random() < 0.5:
        return S.Fork(p.top, tuple(rng.randrange(2, 500) for _ in range(depth + 1)))
    inner = tuple(k.top_ns.cursor + 50 + i for i in range(p.ns.level + 1))
    return S.Fork(p.top, inner + (rng.randrange(2, 50),), False, True)


def _m_setsid_leader(k: Kernel, rng: random.Random, procs: list[Process],
                     live: list[Process]) -> S.Step | None:
    leaders = [p for p in live if p.pid.pgrp or p.session_leader]
    p = _pick(rng, leaders)
    return S.Setsid(p.top) if p else None


def _m_setpgid_wrong(k: Kernel, rng: random.Random, procs: list[Process],
                     live: list[Process]) -> S.Step | None:
    """Wrong caller (a grandparent, a sibling, a child), wrong target (a thread, a dead number),
    or a group in another session or nowhere."""
    caller = rng.choice(live)
    r = rng.random()
    if r < 0.3:
        threads = [t for p in procs for t in p.threads]
        target = rng.choice(threads).nr[0] if threads else _numbers(k, rng)
    elif r < 0.6:
        target = rng.choice(procs).top
    else:
        target = _numbers(k, rng)
    pgid = rng.choice((0, target, caller.top, _numbers(k, rng), rng.choice(procs).pgrp.nr[0]))
    return S.Setpgid(caller.top, target, pgid)


def _m_wait_wrong(k: Kernel, rng: random.Random, procs: list[Process],
                  live: list[Process]) -> S.Step | None:
    caller = rng.choice(live)
    return S.Wait(caller.top, rng.choice(procs).top if rng.random() < 0.8 else _numbers(k, rng))


def _m_exit_odd(k: Kernel, rng: random.Random, procs: list[Process],
                live: list[Process]) -> S.Step | None:
    """Deaths the kernel refuses or changes: a signal that ignores or stops, an init by a catchable
    signal, a core from a signal that does not dump, an exit code from a stopped task."""
    p = rng.choice(live)
    r = rng.random()
    if r < 0.4:
        return S.Exit(p.top, rng.choice(_NO_KILL))
    if r < 0.6:
        init = _pick(rng, [x for x in live if x.unkillable])
        return S.Exit(init.top, rng.choice(_KILL[:5])) if init else None
    if r < 0.8:
        return S.Exit(p.top, rng.choice(_KILL) | 0x80)
    stopped = _pick(rng, [x for x in live if x.state == "stopped"])
    return S.Exit(stopped.top, rng.randrange(256) << 8) if stopped else None


def _m_dead_actor(k: Kernel, rng: random.Random, procs: list[Process],
                  live: list[Process]) -> S.Step | None:
    """A zombie, a stopped task or a number nobody holds as the actor."""
    dead = [p for p in procs if p.state != "alive"]
    nr = rng.choice(dead).top if dead and rng.random() < 0.7 else _numbers(k, rng)
    return rng.choice((S.Setsid(nr), S.Fork(nr), S.Thread(nr), S.Subreaper(nr, True),
                       S.Sigchld(nr, True), S.Comm(nr, "x"), S.ExitLeaderThread(nr), S.Stop(nr),
                       S.Exit(nr, 0), S.Wait(nr, rng.choice(procs).top)))


def _m_random(k: Kernel, rng: random.Random, procs: list[Process],
              live: list[Process]) -> S.Step | None:
    """Any step on live tasks with interesting arguments: often valid, sometimes not."""
    p = rng.choice(live)
    x = p.top
    r = rng.randrange(9)
    if r == 0:
        return S.Fork(x, None, rng.random() < 0.3 and not p.unkillable,
                      rng.random() < 0.1 and k.base_level + p.ns.level + 1 <= 31)
    if r == 1:
        return S.Thread(x)
    if r == 2:
        return S.Setsid(x)
    if r == 3:
        kids = list(p.children.values())
        t = rng.choice(kids).top if kids and rng.random() < 0.7 else x
        return S.Setpgid(x, t, rng.choice((0, x, t, rng.choice(procs).pgrp.nr[0])))
    if r == 4:
        return S.Subreaper(x, rng.random() < 0.7)
    if r == 5:
        return S.Sigchld(x, rng.random() < 0.5)
    if r == 6:
        return S.ExitLeaderThread(x)
    if r == 7:
        return S.Stop(x)
    return S.Exit(x, rng.choice((0, 1 << 8, 9, 15, 6 | 0x80)))


_MUTATIONS: tuple[Callable[..., S.Step | None], ...] = (
    _m_fork_taken, _m_thread_taken, _m_clone_parent_init, _m_set_tid_bad, _m_setsid_leader,
    _m_setpgid_wrong, _m_setpgid_wrong, _m_wait_wrong, _m_exit_odd, _m_dead_actor, _m_random,
    _m_random,
)


# -------------------------------------------------------------------------------------- running


def history(seed: int, max_tasks: int, features: Iterable[str] = FEATURES,
            mutate_ratio: float = 0.5) -> tuple[list[S.Step], str, bool]:
    """The history number `seed` of a campaign: a generated one, mutated half of the time."""
    rng = random.Random(seed)
    tasks = rng.randint(2, max(2, max_tasks))
    feats = frozenset(features)
    _, steps = generate(tasks, rng.randrange(1 << 30), feats)
    steps = sanitize(steps)
    origin = f"fuzz seed {seed}, {tasks} tasks"
    mutated = rng.random() < mutate_ratio
    if mutated:
        n = rng.randint(1, 4)
        steps = mutate(steps, rng, n)
        origin += f", {n} mutation(s)"
    return steps, origin, mutated


def campaign(*, seconds: float | None = None, histories: int | None = None, seed: int = 0,
             max_tasks: int = 30, features: Iterable[str] = FEATURES, cuts: int = 1,
             mutate_ratio: float = 0.5,
             report: Callable[[Disagreement], None] | None = None) -> Stats:
    """Run histories seed, seed+1, ... until `seconds` have passed or `histories` are done."""
    if seconds is None and histories is None:
        raise ValueError("give seconds or histories")
    feats = frozenset(features)
    stats = Stats()
    start = time.monotonic()
    h = 0
    while True:
        if histories is not None and h >= histories:
            break
        if seconds is not None and time.monotonic() - start >= seconds:
            break
        steps, origin, mutated = history(seed + h, max_tasks, feats, mutate_ratio)
        h += 1
        j = _Judge(steps, origin)
        try:
            d, refused = j.judge(cuts, random.Random(seed + h))
        except ProcforgeError as e:  # the engine gave up (a step made no progress): report it
            stats.histories += 1
            stats.engine_errors.append((origin, str(e), tuple(steps)))
            continue
        stats.histories += 1
        stats.mutated += mutated
        stats.steps += len(steps)
        stats.failing_steps += refused
        stats.prefix_runs += j.runs - 1
        if d is not None:
            if d.late_thread or not reproducible(d):
                stats.timing.append(d)
            else:
                stats.disagreements.append(d)
            if report is not None:
                report(d)
    stats.seconds = time.monotonic() - start
    return stats


def reproducible(d: Disagreement, tries: int = 2) -> bool:
    """The disagreement shows again on every replay of its history (a model bug is deterministic;
    an executor race is not)."""
    for _ in range(tries):
        again, _ = judge(d.steps)
        if again is None or again.signature() != d.signature():
            return False
    return True


def save(d: Disagreement, directory: str | Path, number: int) -> Path:
    """Write a disagreement's history to DIR/disagreement-NNNN.steps."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"disagreement-{number:04d}.steps"
    path.write_text(d.text(), encoding="utf-8")
    return path
