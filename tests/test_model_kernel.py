"""The model against the running kernel, for the rules the reference leaves untested or gets wrong.

A small C program runs as init of a private pid namespace (`unshare --fork --pid --mount-proc
--kill-child` under `timeout -s KILL`); when it returns, the kernel kills whatever it left in its
namespace, so nothing outlives the test. It prints what the kernel did; the test asserts that and
that the model does the same for the same steps. Skipped without root, gcc or unshare.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from procforge import steps as S
from procforge.kernel import Kernel

PROGRAM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t c3(const pid_t *tids, size_t n, unsigned long flags) {
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    a.set_tid = (unsigned long)tids;
    a.set_tid_size = n;
    return syscall(SYS_clone3, &a, sizeof a);
}
static const char *err(pid_t r) {
    if (r == 0) _exit(0);
    if (r > 0) { waitpid(r, NULL, 0); return "ok"; }
    return errno == EEXIST ? "EEXIST" : errno == EINVAL ? "EINVAL" : strerror(errno);
}
static void stat_of(pid_t p, char *state, int *code) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", p);
    *state = '-'; *code = -1;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')') + 2;
    *state = *q;
    int field = 3;
    for (char *t = strtok(q, " "); t; t = strtok(NULL, " "), field++)
        if (field == 52) *code = atoi(t);
}
int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int pfd[2], go[2];
    if (pipe(pfd) || pipe(go)) return 1;
    /* set_tid: levels are checked innermost first (EEXIST inside before EINVAL outside) */
    pid_t x = fork();
    if (x == 0) {
        if (unshare(CLONE_NEWPID)) _exit(1);
        pid_t t1[2] = {1, 500};
        pid_t init = c3(t1, 2, 0);
        if (init == 0) { pause(); _exit(0); }
        pid_t a[2] = {1, 4194304};
        printf("set_tid_inner_taken_outer_invalid=%s\n", err(c3(a, 2, 0)));
        pid_t b[2] = {5, 4194304};
        printf("set_tid_inner_free_outer_invalid=%s\n", err(c3(b, 2, 0)));
        kill(init, SIGKILL);
        waitpid(init, NULL, 0);
        _exit(0);
    }
    waitpid(x, NULL, 0);
    /* a number held only as a session id */
    pid_t s = fork();
    if (s == 0) {
        setsid();
        pid_t m = fork();
        if (m == 0) { pause(); _exit(0); }
        setpgid(m, m);
        if (write(pfd[1], &m, sizeof m) < 0) _exit(1);
        _exit(0);
    }
    pid_t m;
    if (read(pfd[0], &m, sizeof m) != sizeof m) return 1;
    waitpid(s, NULL, 0);
    pid_t ts[1] = {s};
    printf("set_tid_held_as_sid=%s\n", err(c3(ts, 1, 0)));
    kill(m, SIGKILL);
    waitpid(m, NULL, 0);
    /* P (session) -> C (own group, running) -> D, N (ns init): both stopped. P exits. */
    pid_t p = fork();
    if (p == 0) {
        setsid();
        pid_t c = fork();
        if (c == 0) {
            setpgid(0, 0);
            pid_t d = fork();
            if (d == 0) { pause(); _exit(0); }
            pid_t n = c3(NULL, 0, CLONE_NEWPID);
            if (n == 0) { pause(); _exit(0); }
            pid_t ids[3] = {getpid(), d, n};
            if (write(pfd[1], ids, sizeof ids) < 0) _exit(1);
            for (;;) pause();
        }
        char ch;
        if (read(go[0], &ch, 1) < 0) _exit(1);
        _exit(0);
    }
    pid_t ids[3];
    if (read(pfd[0], ids, sizeof ids) != sizeof ids) return 1;
    kill(ids[1], SIGSTOP);
    kill(ids[2], SIGSTOP);
    char st[3];
    int code[3];
    for (int i = 0; i < 200; i++) {
        stat_of(ids[1], &st[1], &code[1]);
        stat_of(ids[2], &st[2], &code[2]);
        if (st[1] == 'T' && st[2] == 'T') break;
        usleep(10000);
    }
    if (write(go[1], "x", 1) < 0) return 1;
    waitpid(p, NULL, 0);
    for (int i = 0; i < 200; i++) {   /* until stopped D is gone (zombie) */
        stat_of(ids[1], &st[1], &code[1]);
        if (st[1] == 'Z') break;
        usleep(10000);
    }
    usleep(100000);
    for (int i = 0; i < 3; i++) stat_of(ids[i], &st[i], &code[i]);
    printf("orphan_running_member=%c\norphan_stopped_member=%c %d\norphan_stopped_ns_init=%c\n",
           st[0], st[1], code[1], st[2]);
    return 0;   /* init returns: the kernel kills the rest of the namespace */
}
"""


def _kernel_facts(tmp: Path) -> dict[str, str]:
    if os.geteuid() != 0 or not shutil.which("gcc") or not shutil.which("unshare"):
        pytest.skip("needs root, gcc and unshare")
    src, exe = tmp / "facts.c", tmp / "facts"
    src.write_text(PROGRAM)
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run(
        ["timeout", "-s", "KILL", "30", "unshare", "--fork", "--pid", "--mount-proc",
         "--kill-child", str(exe)],
        check=True, capture_output=True, text=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _kernel_facts(tmp_path_factory.mktemp("kernel"))


def _run(text: str) -> Kernel:
    k = Kernel.fresh()
    assert k.run(S.parse_text(text)) is None
    return k


def test_set_tid_levels_checked_innermost_first(facts: dict[str, str]) -> None:
    assert facts["set_tid_inner_taken_outer_invalid"] == "EEXIST"
    assert facts["set_tid_inner_free_outer_invalid"] == "EINVAL"
    # the same in the model: a child of the inner init 500/1 with set_tid (outer, inner)
    k = _run("fork 1 pid=500/1 newns")
    assert k.apply(S.Fork(500, (4194304, 1))).errno == "EEXIST"
    assert k.apply(S.Fork(500, (4194304, 5))).errno == "EINVAL"


def test_eexist_for_number_held_only_as_sid(facts: dict[str, str]) -> None:
    assert facts["set_tid_held_as_sid"] == "EEXIST"
    k = _run("fork 1\nsetsid 2\nfork 2\nsetpgid 2 3 3\nexit 2 code=0\nwait 1 2")
    assert k.apply(S.Fork(1, (2,))).errno == "EEXIST"


def test_orphaned_group_sighup_hits_only_stopped_members(facts: dict[str, str]) -> None:
    assert facts["orphan_running_member"] in "SR"
    assert facts["orphan_stopped_member"] == "Z 1"  # died of SIGHUP (wait status 1)
    assert facts["orphan_stopped_ns_init"] in "SR"  # ignored SIGHUP, continued by SIGCONT
    k = _run("fork 1\nsetsid 2\nfork 2\nsetpgid 3 3 3\nfork 3\nfork 3 newns\nstop 4\nstop 5\n"
             "exit 2 code=0")
    tree = k.snapshot()
    assert tree[3].state == "alive"
    assert (tree[4].state, tree[4].exit_status) == ("zombie", 1)
    assert tree[5].state == "alive"
