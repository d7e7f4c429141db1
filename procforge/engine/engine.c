/*
 * pf-engine: carries out a procforge step list on the running kernel (driven by procforge.engine).
 *
 * Kernel facts this relies on (linux-process-semantics.md; docs/restore.md):
 * - clone3 places a pid at every namespace level with set_tid (innermost first). The caller needs
 *   CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the user namespace that owns each targeted level, so
 *   an unprivileged restorer makes a user namespace together with the pid namespace
 *   (CLONE_NEWUSER | CLONE_NEWPID), where the new init holds every capability.
 * - Every restored task is a clone of this program made with CLONE_VM: processes (own pid, signal
 *   handlers, files, credentials) that share one small address space. Such a fork copies no page
 *   tables and builds no anon_vma chain, so a 2,000-deep chain costs what a flat tree does, and a
 *   private futex word reaches every task. The tasks share this program's TLS too, so task code uses
 *   raw system calls only: no errno, no stdio, no malloc. Since 5.16 a core dump kills only the
 *   dumping thread group, not the other users of the memory.
 * - A namespace init ignores every signal with the default action except SIGKILL and SIGSTOP sent
 *   from an ancestor namespace (sig_task_ignored's "force"); the engine, outside, sends stops and
 *   deaths by signal. Signals whose default action is to ignore or stop never kill.
 * - A pidfd polls readable when its thread group has become a zombie, after exit_notify reparented
 *   the children and sent any orphaned-group SIGHUP. A leader thread that exits while other threads
 *   live is never reported ("the leader exited prematurely"): its /proc state turns to Z. A zombie
 *   being released shows state X in /proc until release_task unhashes it.
 * - /proc/self links to the caller's tgid as the /proc mount numbers it: the cheapest way for a new
 *   task to learn its pid in the engine's namespace (the engine checks that the mount is its own).
 *
 * Protocol: the plan arrives on stdin (procforge/engine/protocol.py writes it), results go to
 * stdout, then the engine holds the tree until stdin says D (detach: leave it) or K / EOF (kill it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "pf-engine supports x86_64 only (raw system calls and the clone trampoline are x86_64 assembly)"
#endif

#define CL_VM 0x00000100UL
#define CL_FS 0x00000200UL
#define CL_FILES 0x00000400UL
#define CL_SIGHAND 0x00000800UL
#define CL_PIDFD 0x00001000UL
#define CL_PARENT 0x00008000UL
#define CL_THREAD 0x00010000UL
#define CL_SYSVSEM 0x00040000UL
#define CL_NEWUSER 0x10000000UL
#define CL_NEWPID 0x20000000UL
#define NR_clone3 435
#define NR_pidfd_open 434
#define NR_pidfd_send_signal 424
#define NR_close_range 436
#define FUTEX_WAIT_P 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */
#define FUTEX_WAKE_P 129
#define PR_SET_NAME_ 15
#define PR_SET_CHILD_SUBREAPER_ 36
#define PR_GET_CHILD_SUBREAPER_ 37
#define WALL_ 0x40000000
#define PR_FUTEX_HASH_ 78
#define PR_FUTEX_HASH_SET_SLOTS_ 1

#define MAXLVL 33
#define STACK_SIZE (32 * 1024)
#define PIDMAP 4194304 /* PID_MAX_LIMIT: the largest pid any namespace can hold */

enum { OP_FORK = 1, OP_THREAD, OP_SETSID, OP_SETPGID, OP_SUBREAPER, OP_SIGCHLD, OP_EXIT,
       OP_EXIT_LEADER, OP_WAIT, OP_STOP, OP_COMM };
enum { RES_NONE = 0, RES_OK, RES_ERRNO, RES_NX, RES_SKIPPED };
/* reasons a step could not be issued (procforge/engine/protocol.py has the words) */
enum { NX_NO_TASK = 1, NX_ZOMBIE, NX_STOPPED, NX_NO_THREAD, NX_LEADER_GONE, NX_WOULD_BLOCK,
       NX_SIG_NO_KILL, NX_INIT_IGNORES, NX_DIED };

struct clone_args_ {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

struct step {
    int op, actor, a, b, flags, npid;
    int pid[MAXLVL]; /* top level first; names the innermost npid levels */
    char name[16];
};

struct result {
    int kind, err, npid, extra;
    int made; /* fork/thread: the index of the new process or thread */
    int pid[MAXLVL];
    int met[9]; /* the state a failing step met, as its caller saw it */
};

struct proc {
    uint32_t cmd;      /* futex: step index + 1 for the worker to run (PREP bit: prepare a death) */
    uint32_t handover; /* futex: bumped when another thread becomes the worker */
    int worker;        /* -1: the leader thread, else a thread index */
    int leader_alive;
    int level, nr[MAXLVL]; /* pid at each level, top first */
    int host;              /* tgid in the engine's namespace */
    int ns, ns_up;         /* index of the init of its namespace (0: the top); an init's outer ns */
    int threads;           /* first thread index, -1 for none */
    int is_init;
    /* the engine's own bookkeeping */
    int pidfd, stopped, subreaper;
};

struct thr {
    int proc, level, host, next;
    int nr[MAXLVL];
};

#define PREP 0x80000000u

/* ----------------------------------------------------------------- shared state (one address space) */
static struct step *steps;
static struct result *results;
static struct proc *procs;
static struct thr *thrs;
static int32_t *slot_of; /* top number -> proc+1, or -(thread+1) */
static char *stacks;
static int nsteps, nprocs, nthrs, max_procs, max_thrs;
static uint32_t done_seq;  /* futex: the token of the last finished dispatch */
static uint32_t cur_token; /* the token of the dispatch under way */
static uint32_t pending;   /* parts of that dispatch still running: its worker and new tasks */
static int run_end;        /* that dispatch runs steps [i, run_end) */
static uint32_t root_go;  /* futex: the root waits for its user namespace maps */
static int mode_record, into_current, use_userns, root_pid, proc_base;
static char scratch[4096];

/* ------------------------------------------------------------------------- raw system calls */
static inline long sc(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sc0(n) sc(n, 0, 0, 0, 0, 0, 0)
#define sc1(n, a) sc(n, (long)(a), 0, 0, 0, 0, 0)
#define sc2(n, a, b) sc(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sc3(n, a, b, c) sc(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sc4(n, a, b, c, d) sc(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* clone3 onto a new stack; the child runs fn(arg) there and never comes back into our frames. */
static long clone3_run(struct clone_args_ *ca, int (*fn)(void *), void *arg)
{
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "mov %%r13, %%rdi\n\t"
                     "call *%%r12\n\t"
                     "mov %%eax, %%edi\n\t"
                     "mov $60, %%eax\n\t"
                     "syscall\n\t"
                     "hlt\n"
                     "1:\n\t"
                     : "=a"(ret)
                     : "a"((long)NR_clone3), "D"(ca), "S"(sizeof *ca), "r"(r12), "r"(r13)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline uint32_t ld(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void st(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline long fwait(uint32_t *p, uint32_t v, const struct timespec *ts)
{
    return sc4(SYS_futex, p, FUTEX_WAIT_P, v, ts);
}
static inline void fwake(uint32_t *p, int n) { sc3(SYS_futex, p, FUTEX_WAKE_P, n); }

static int k_strlen(const char *s)
{
    int n = 0;
    while (s[n])
        n++;
    return n;
}

static int parse_int(const char *s, int *out)
{
    int v = 0, any = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        any = 1;
    }
    *out = v;
    return any;
}

/* tgid (and tid) as the /proc mount numbers them: /proc/thread-self -> "TGID/task/TID" */
static void self_host(int *tgid, int *tid)
{
    char buf[64];
    long n = sc3(SYS_readlink, "/proc/thread-self", buf, sizeof buf - 1);
    *tgid = *tid = 0;
    if (n <= 0)
        return;
    buf[n] = 0;
    const char *p = buf;
    parse_int(p, tgid);
    while (*p && *p != '/')
        p++;
    if (*p == '/' && p[1] == 't')
        parse_int(p + 6, tid);
}

/* Every level's number from /proc/thread-self/status NSpid (only when set_tid did not name them). */
static int read_nspid(int *nr, int levels)
{
    char buf[4096];
    int fd = (int)sc3(SYS_open, "/proc/thread-self/status", O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    long n = sc3(SYS_read, fd, buf, sizeof buf - 1);
    sc1(SYS_close, fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = buf;
    for (; *p; p++)
        if (p[0] == '\n' && p[1] == 'N' && p[2] == 'S' && p[3] == 'p' && p[4] == 'i' && p[5] == 'd' &&
            p[6] == ':')
            break;
    if (!*p)
        return -1;
    p += 7;
    int all[MAXLVL + 8], cnt = 0;
    while (*p && *p != '\n' && cnt < MAXLVL + 8) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!parse_int(p, &all[cnt]))
            break;
        cnt++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (cnt < proc_base + levels)
        return -1;
    for (int i = 0; i < levels; i++)
        nr[i] = all[proc_base + i];
    return 0;
}

/* ------------------------------------------------------------------------------ task side */
/* A dispatch is done when its worker and every task it created have reported. */
static void part_done(void)
{
    if (__atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL) == 0) {
        st(&done_seq, ld(&cur_token));
        fwake(&done_seq, 1);
    }
}

static void finish(struct result *r, long rc)
{
    if (rc < 0) {
        r->kind = RES_ERRNO;
        r->err = (int)-rc;
    } else {
        r->kind = RES_OK;
    }
}

static void nx(struct result *r, int why)
{
    r->kind = RES_NX;
    r->err = why;
}

/* Is a task of namespace `ns` (an init's index, 0 for the top) visible from namespace `cns`? */
static int ns_visible(int ns, int cns)
{
    int clevel = cns == 0 ? 0 : procs[cns].level;
    while (ns > 0 && procs[ns].level > clevel)
        ns = procs[ns].ns_up;
    if (ns < 0)
        ns = 0;
    return ns == cns;
}

/* A number free in the caller's namespace: the answer for an id it cannot see. */
static int unused_nr(void)
{
    for (int n = PIDMAP - 1; n > 300; n--)
        if (sc2(SYS_kill, n, 0) == -ESRCH && sc2(SYS_kill, -n, 0) == -ESRCH &&
            sc1(SYS_getsid, n) == -ESRCH)
            return n;
    return PIDMAP - 1;
}

/* A top-level number as the caller (at its level, in its namespace) names it. */
static int xlate(int n, struct proc *c)
{
    if (n <= 0 || c->level == 0)
        return n;
    if (n >= PIDMAP)
        return unused_nr();
    int32_t s = slot_of[n];
    if (s > 0) {
        struct proc *t = &procs[s - 1];
        if (t->level >= c->level && ns_visible(t->ns, c->ns))
            return t->nr[c->level];
    } else if (s < 0) {
        struct thr *t = &thrs[-s - 1];
        if (t->level >= c->level && ns_visible(procs[t->proc].ns, c->ns))
            return t->nr[c->level];
    }
    return unused_nr();
}

static void fill_met(struct result *r, int probe)
{
    r->met[0] = (int)sc0(SYS_getpid);
    r->met[1] = (int)sc0(SYS_getppid);
    r->met[2] = (int)sc1(SYS_getpgid, 0);
    r->met[3] = (int)sc1(SYS_getsid, 0);
    r->met[4] = probe;
    if (probe > 0) {
        r->met[5] = (int)sc2(SYS_kill, probe, 0);
        r->met[6] = (int)sc1(SYS_getpgid, probe);
        r->met[7] = (int)sc1(SYS_getsid, probe);
        r->met[8] = (int)sc2(SYS_kill, -probe, 0);
    }
}

static void serve(struct proc *p, int me);

/* nr[] holds what set_tid named (nr[0] != 0: every level); the rest comes from /proc. */
static void learn_numbers(int *nr, int level, int own)
{
    int named_all = nr[0] != 0;
    nr[level] = own;
    if (level > 0 && !named_all && read_nspid(nr, level + 1) < 0)
        nr[0] = 0;
}

static int proc_main(void *arg)
{
    struct proc *p = arg;
    int tid;
    self_host(&p->host, &tid);
    learn_numbers(p->nr, p->level, (int)sc0(SYS_getpid));
    part_done();
    serve(p, -1);
    return 0;
}

static int thread_main(void *arg)
{
    struct thr *t = arg;
    int tgid;
    self_host(&tgid, &t->host);
    learn_numbers(t->nr, t->level, (int)sc0(SYS_gettid));
    part_done();
    serve(&procs[t->proc], (int)(t - thrs));
    return 0;
}

/* Fill nr[] from a partial set_tid (top first, innermost levels) and the clone3 array. */
static void prepare_set_tid(const struct step *s, int level, int *nr, int *set_tid)
{
    int first = level + 1 - s->npid;
    for (int l = 0; l <= level; l++)
        nr[l] = 0;
    for (int k = 0; k < s->npid; k++) {
        if (first + k >= 0 && first + k <= level)
            nr[first + k] = s->pid[k];
        set_tid[k] = s->pid[s->npid - 1 - k]; /* clone3 wants the innermost first */
    }
    if (first < 0) /* more numbers than levels: clone3 will say EINVAL */
        nr[0] = 0;
}

/* The number of the new task at the caller's level, to probe when clone3 fails. */
static int probe_at(const struct step *s, int child_level, int caller_level)
{
    int k = caller_level - (child_level + 1 - s->npid);
    return s->npid && k >= 0 && k < s->npid ? s->pid[k] : 0;
}

static void task_fork(int i, struct step *s, struct result *r, struct proc *p)
{
    int newns = s->flags & 2, cp = s->flags & 1;
    int ci = nprocs;
    struct proc *c = &procs[ci];
    int set_tid[MAXLVL];
    memset(c, 0, sizeof *c);
    c->level = p->level + (newns ? 1 : 0);
    c->worker = -1;
    c->leader_alive = 1;
    c->threads = -1;
    c->pidfd = -1;
    c->is_init = newns ? 1 : 0;
    c->ns = newns ? ci : p->ns;
    c->ns_up = newns ? p->ns : -1;
    prepare_set_tid(s, c->level, c->nr, set_tid); /* nr[0] stays 0 unless every level is named */
    struct clone_args_ ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CL_VM | (cp ? CL_PARENT : 0) | (newns ? CL_NEWPID : 0);
    ca.exit_signal = cp ? 0 : SIGCHLD;
    ca.stack = (uint64_t)(uintptr_t)(stacks + (size_t)ci * STACK_SIZE);
    ca.stack_size = STACK_SIZE;
    if (s->npid) {
        ca.set_tid = (uint64_t)(uintptr_t)set_tid;
        ca.set_tid_size = (uint64_t)s->npid;
    }
    (void)i;
    __atomic_add_fetch(&pending, 1, __ATOMIC_ACQ_REL); /* the child reports once it knows itself */
    long rc = clone3_run(&ca, proc_main, c);
    if (rc < 0) {
        __atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL);
        finish(r, rc);
        fill_met(r, probe_at(s, c->level, p->level));
        return;
    }
    nprocs = ci + 1;
    r->made = ci;
    r->kind = RES_OK;
}

static void task_thread(int i, struct step *s, struct result *r, struct proc *p)
{
    int ti = nthrs;
    struct thr *t = &thrs[ti];
    int set_tid[MAXLVL];
    memset(t, 0, sizeof *t);
    t->proc = (int)(p - procs);
    t->level = p->level;
    t->next = -1;
    prepare_set_tid(s, t->level, t->nr, set_tid);
    struct clone_args_ ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CL_VM | CL_FS | CL_FILES | CL_SIGHAND | CL_THREAD | CL_SYSVSEM;
    ca.exit_signal = 0;
    ca.stack = (uint64_t)(uintptr_t)(stacks + (size_t)(max_procs + ti) * STACK_SIZE);
    ca.stack_size = STACK_SIZE;
    if (s->npid) {
        ca.set_tid = (uint64_t)(uintptr_t)set_tid;
        ca.set_tid_size = (uint64_t)s->npid;
    }
    (void)i;
    __atomic_add_fetch(&pending, 1, __ATOMIC_ACQ_REL);
    long rc = clone3_run(&ca, thread_main, t);
    if (rc < 0) {
        __atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL);
        finish(r, rc);
        fill_met(r, probe_at(s, t->level, t->level));
        return;
    }
    nthrs = ti + 1;
    r->made = ti;
    /* append: the list order is creation order */
    if (p->threads < 0) {
        p->threads = ti;
    } else {
        int k = p->threads;
        while (thrs[k].next >= 0)
            k = thrs[k].next;
        thrs[k].next = ti;
    }
    r->kind = RES_OK;
}

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

static int put_int(char *out, int v)
{
    int digits[12], d = 0, n = 0;
    do {
        digits[d++] = v % 10;
        v /= 10;
    } while (v);
    while (d)
        out[n++] = (char)('0' + digits[--d]);
    return n;
}

/* PR_SET_NAME names only the calling thread, and a fork copies the forking thread's name: name
 * every live thread, so that the process (the leader's name in /proc) and whichever thread forks
 * next agree, as the model's per-process comm says. */
static long set_comm(struct proc *p, const char *name)
{
    long rc = sc2(SYS_prctl, PR_SET_NAME_, name);
    if (rc < 0)
        return rc;
    int me_host = p->worker < 0 ? p->host : thrs[p->worker].host;
    int others[1 + 4096], n = 0;
    if (p->leader_alive && p->host != me_host)
        others[n++] = p->host;
    for (int t = p->threads; t >= 0 && n < 4097; t = thrs[t].next)
        if (thrs[t].host != me_host)
            others[n++] = thrs[t].host;
    if (!p->leader_alive)
        others[n++] = p->host; /* the zombie leader's name is the one /proc shows */
    for (int k = 0; k < n; k++) {
        char path[64] = "/proc/self/task/";
        int len = k_strlen(path);
        len += put_int(path + len, others[k]);
        memcpy(path + len, "/comm", 6);
        int fd = (int)sc3(SYS_open, path, O_WRONLY | O_CLOEXEC, 0);
        if (fd < 0)
            continue;
        sc3(SYS_write, fd, name, k_strlen(name));
        sc1(SYS_close, fd);
    }
    return 0;
}

/* Before a death by signal: a core dump only when the status asks for one. */
static void prepare_death(int i)
{
    struct step *s = &steps[i];
    { /* before a death by signal: a core dump only when the status asks for one */
        int core = s->a & 0x80;
        struct rlimit rl;
        sc4(SYS_prlimit64, 0, RLIMIT_CORE, 0, &rl);
        if (core) {
            rl.rlim_cur = rl.rlim_max;
            if (scratch[0])
                sc1(SYS_chdir, scratch);
        } else {
            rl.rlim_cur = 1; /* below any dump's size, and the "no dump" value for pipes */
            if (rl.rlim_max < 1)
                rl.rlim_cur = 0;
        }
        sc4(SYS_prlimit64, 0, RLIMIT_CORE, &rl, 0);
    }
}

/* One step by p's worker. Exits report (part_done) before they leave; other steps do not. */
static void exec_step(int i, struct proc *p)
{
    struct step *s = &steps[i];
    struct result *r = &results[i];
    long rc = 0;
    int probe = 0;
    switch (s->op) {
    case OP_FORK:
        task_fork(i, s, r, p);
        return;
    case OP_THREAD:
        task_thread(i, s, r, p);
        return;
    case OP_SETSID:
        rc = sc0(SYS_setsid);
        break;
    case OP_SETPGID: {
        int t = s->a ? xlate(s->a, p) : 0, g = s->b ? xlate(s->b, p) : 0;
        probe = g ? g : t;
        rc = sc2(SYS_setpgid, t, g);
        break;
    }
    case OP_SUBREAPER:
        rc = sc2(SYS_prctl, PR_SET_CHILD_SUBREAPER_, s->a ? 1 : 0);
        if (rc >= 0)
            p->subreaper = s->a ? 1 : 0;
        break;
    case OP_SIGCHLD: {
        struct ksigaction act;
        memset(&act, 0, sizeof act);
        act.handler = s->a ? SIG_IGN : SIG_DFL;
        rc = sc4(SYS_rt_sigaction, SIGCHLD, &act, 0, 8);
        break;
    }
    case OP_COMM:
        rc = set_comm(p, s->name);
        break;
    case OP_WAIT: {
        int c = xlate(s->a, p), status = 0;
        probe = c;
        rc = sc4(SYS_wait4, c, &status, WNOHANG | WALL_, 0);
        if (rc == 0) {
            nx(r, NX_WOULD_BLOCK);
            return;
        }
        if (rc > 0)
            r->extra = status;
        break;
    }
    case OP_EXIT:
        r->kind = RES_OK;
        part_done();
        sc1(SYS_exit_group, (s->a >> 8) & 0xff);
        for (;;)
            ;
    case OP_EXIT_LEADER: {
        int t = p->threads;
        if (t < 0 || p->worker >= 0) {
            nx(r, t < 0 ? NX_NO_THREAD : NX_LEADER_GONE);
            return;
        }
        p->leader_alive = 0;
        __atomic_store_n(&p->worker, t, __ATOMIC_RELEASE);
        __atomic_add_fetch(&p->handover, 1, __ATOMIC_ACQ_REL);
        fwake(&p->handover, INT_MAX);
        r->kind = RES_OK;
        part_done();
        sc1(SYS_exit, 0);
        for (;;)
            ;
    }
    default:
        rc = -EINVAL;
    }
    finish(r, rc);
    if (rc < 0)
        fill_met(r, probe);
}


/* A dispatch: the prepare command, or steps [i, run_end) in order (stopping at the first failure
 * unless recording). */
static void run_step(uint32_t cmd, struct proc *p)
{
    int i = (int)(cmd & ~PREP) - 1;
    if (cmd & PREP) {
        prepare_death(i);
    } else {
        int end = run_end;
        for (int k = i; k < end; k++) {
            exec_step(k, p);
            if (!mode_record && results[k].kind != RES_OK)
                break;
        }
    }
    part_done();
}

/* The worker thread of a process runs the steps the engine hands it; other threads idle. */
static void serve(struct proc *p, int me)
{
    for (;;) {
        uint32_t h = ld(&p->handover);
        if (__atomic_load_n(&p->worker, __ATOMIC_ACQUIRE) != me) {
            fwait(&p->handover, h, 0);
            continue;
        }
        uint32_t c = ld(&p->cmd);
        if (c == 0) {
            fwait(&p->cmd, 0, 0);
            continue;
        }
        if (!__atomic_compare_exchange_n(&p->cmd, &c, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue; /* the engine took it back */
        run_step(c, p);
    }
}

static int root_main(void *arg)
{
    (void)arg;
    struct proc *p = &procs[0];
    /* a clean slate: no inherited files, default signal actions, nothing blocked */
    sc3(NR_close_range, 0, ~0U, 0);
    struct ksigaction act;
    memset(&act, 0, sizeof act);
    act.handler = SIG_DFL;
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sc4(SYS_rt_sigaction, sig, &act, 0, 8);
    uint64_t none = 0;
    sc4(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, 8);
    while (ld(&root_go) == 0)
        fwait(&root_go, 0, 0);
    int tid;
    self_host(&p->host, &tid);
    serve(p, -1);
    return 0;
}

/* ------------------------------------------------------------------------- engine (outside) */
static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static int root_pidfd = -1, root_host = -1, aborted_at = -1, pinned;
static cpu_set_t orig_cpus;

static void kill_all(void);

/* A fatal problem: remove whatever was built, then report it on the result stream. */
static void die(int code, const char *fmt, ...)
{
    static int dying;
    if (!dying && root_pidfd >= 0) {
        dying = 1;
        kill_all();
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FATAL %d ", code);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
    exit(code);
}

static int lookup(int top)
{
    if (top <= 0 || top >= PIDMAP)
        return -1;
    int32_t s = slot_of[top];
    return s > 0 ? s - 1 : -1;
}

/* 1: alive, 0: exited (a zombie, or reaped when *reaped is set) */
static int alive(struct proc *p, int *reaped)
{
    struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
    if (reaped)
        *reaped = 0;
    if (p->pidfd < 0)
        return 0;
    if (poll(&pf, 1, 0) <= 0)
        return 1;
    if (reaped && (pf.revents & POLLHUP))
        *reaped = 1;
    return 0;
}

static int read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = 0;
    return (int)n;
}

/* The state letter of /proc/HOST[/task/TID]/stat, or 0 when it is gone. */
static char stat_state(int host, int tid)
{
    char path[64], buf[1024];
    if (tid > 0)
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", host, tid);
    else
        snprintf(path, sizeof path, "/proc/%d/stat", host);
    if (read_file(path, buf, sizeof buf) <= 0)
        return 0;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

static void nap(long usec)
{
    struct timespec ts = {usec / 1000000, (usec % 1000000) * 1000};
    nanosleep(&ts, 0);
}

/* A zombie on its way to release_task shows X: wait until it is unhashed. */
static void settle_released(int host)
{
    for (int k = 0; k < 100000 && stat_state(host, 0) == 'X'; k++)
        nap(k < 10 ? 10 : 100);
}

/* Host pids of the children of every live thread of p (to settle their release after p exits). */
static int children_of(struct proc *p, int *out, int cap)
{
    int n = 0;
    char path[96], buf[8192];
    int tids[1 + 4096], nt = 0;
    if (p->leader_alive)
        tids[nt++] = p->host;
    for (int t = p->threads; t >= 0 && nt < 4097; t = thrs[t].next)
        tids[nt++] = thrs[t].host;
    for (int k = 0; k < nt; k++) {
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", p->host, tids[k]);
        if (read_file(path, buf, sizeof buf) <= 0)
            continue;
        char *q = buf;
        while (*q && n < cap) {
            int v;
            if (parse_int(q, &v) && v > 0)
                out[n++] = v;
            while (*q >= '0' && *q <= '9')
                q++;
            while (*q == ' ')
                q++;
            if (!(*q >= '0' && *q <= '9'))
                break;
        }
    }
    return n;
}

static void wait_pidfd(int fd, const char *what, int top)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    for (int k = 0; k < 600; k++) {
        int r = poll(&pf, 1, 100);
        if (r > 0)
            return;
        if (r < 0 && errno != EINTR)
            break;
    }
    die(70, "internal: %s %d did not finish within a minute", what, top);
}

/* A leader thread that exits while other threads live becomes a zombie leader, but pidfds never
 * report it ("the leader exited prematurely"): watch its own /proc state turn to Z. */
static void wait_leader_exit(int host, int top)
{
    for (int k = 0; k < 120000; k++) {
        char c = stat_state(host, host);
        if (c == 'Z' || c == 0)
            return;
        nap(k < 50 ? 10 : 500);
    }
    die(70, "internal: the leader thread of %d did not exit within a minute", top);
}

static int sig_kills(int sig)
{
    switch (sig) {
    case SIGCHLD: case SIGCONT: case SIGURG: case SIGWINCH:
    case SIGSTOP: case SIGTSTP: case SIGTTIN: case SIGTTOU:
        return 0;
    }
    return sig >= 1 && sig <= 64;
}

static int live_threads(struct proc *p, int *tids)
{
    int n = 0;
    if (p->leader_alive)
        tids[n++] = p->host;
    for (int t = p->threads; t >= 0 && n < 4096; t = thrs[t].next)
        tids[n++] = thrs[t].host;
    return n;
}

/* After SIGSTOP: wait until every live thread is in group stop (T). /proc offers no wakeup. */
static void wait_stopped(struct proc *p)
{
    static int tids[4096];
    int n = live_threads(p, tids);
    for (int k = 0; k < 200000; k++) {
        int all = 1;
        for (int j = 0; j < n; j++) {
            char c = stat_state(p->host, tids[j]);
            if (c != 'T' && c != 0)
                all = 0;
        }
        if (all || !alive(p, 0))
            return;
        nap(k < 20 ? 5 : 200);
    }
}

/* Deaths by orphaned-group SIGHUP are asynchronous: after an exit, wait for every victim. */
static void settle_hangups(void)
{
    int any = 0;
    for (int k = 0; k < nprocs; k++) {
        struct proc *q = &procs[k];
        if (q->stopped && alive(q, 0) && stat_state(q->host, 0) != 'T') {
            any = 1;
            q->stopped = 0;
        }
    }
    if (!any)
        return;
    for (int round = 0; round < 64; round++) {
        int found = 0;
        for (int k = 0; k < nprocs; k++) {
            struct proc *q = &procs[k];
            char path[64], buf[4096];
            if (!alive(q, 0))
                continue;
            snprintf(path, sizeof path, "/proc/%d/status", q->host);
            if (read_file(path, buf, sizeof buf) <= 0)
                continue;
            char *sp = strstr(buf, "\nSigPnd:"), *hp = strstr(buf, "\nShdPnd:");
            unsigned long long a = sp ? strtoull(sp + 8, 0, 16) : 0, b = hp ? strtoull(hp + 8, 0, 16) : 0;
            if (((a | b) & ((1ULL << (SIGKILL - 1)) | (1ULL << (SIGHUP - 1)))) && !q->is_init) {
                int kids[4096], nk = children_of(q, kids, 4096);
                wait_pidfd(q->pidfd, "hung-up task", q->nr[0]);
                settle_released(q->host);
                for (int j = 0; j < nk; j++)
                    settle_released(kids[j]);
                found = 1;
            }
        }
        if (!found)
            break;
    }
}

static uint32_t tokens;

/* Hand p's worker steps [i, end) (or the prepare command); returns the dispatch's token. */
static uint32_t dispatch(struct proc *p, uint32_t cmd, int end)
{
    uint32_t tok = ++tokens;
    run_end = end;
    st(&pending, 1);
    st(&cur_token, tok);
    st(&p->cmd, cmd);
    fwake(&p->cmd, 1);
    return tok;
}

/* Wait for a dispatch; 0 when its worker died before taking it. */
static int wait_done(uint32_t tok, struct proc *p, uint32_t cmd, int i)
{
    for (int spins = 0;; spins++) {
        uint32_t d = ld(&done_seq);
        if (d == tok)
            return 1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        fwait(&done_seq, d, &ts);
        if (ld(&done_seq) == tok)
            return 1;
        if (spins > 0 && spins % 2 == 0 && !alive(p, 0)) {
            uint32_t c = cmd;
            if (__atomic_compare_exchange_n(&p->cmd, &c, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return 0;
        }
        if (spins > 1200)
            die(70, "internal: step %d made no progress for a minute", i + 1);
    }
}

static int is_stopped_now(struct proc *p)
{
    if (!p->stopped)
        return 0;
    char c = stat_state(p->host, p->leader_alive ? 0 : (p->threads >= 0 ? thrs[p->threads].host : 0));
    if (c == 'T')
        return 1;
    p->stopped = 0; /* continued by an orphaned group's SIGCONT */
    return 0;
}

static void after_exit(struct proc *p, int *kids, int nk)
{
    int had_threads = p->threads >= 0;
    wait_pidfd(p->pidfd, "exiting task", p->nr[0]);
    /* The pidfd wakes us from release_task of the last thread, which frees that thread's pid only
     * after it drops the tasklist lock (free_pids): on our one CPU we may run first, and a fork
     * then finds the tid still taken (seen by procforge fuzz). A nap lets the thread finish. */
    if (had_threads)
        nap(300);
    settle_released(p->host);
    for (int j = 0; j < nk; j++)
        settle_released(kids[j]);
    p->stopped = 0;
    settle_hangups();
}

/* After a fork or thread step: the engine's map, the new process's pidfd, the pids recorded. */
static void register_birth(int i)
{
    struct result *r = &results[i];
    if (steps[i].op == OP_FORK) {
        struct proc *c = &procs[r->made];
        if (c->nr[0] > 0 && c->nr[0] < PIDMAP)
            slot_of[c->nr[0]] = r->made + 1;
        c->pidfd = (int)syscall(NR_pidfd_open, c->host, 0);
        if (c->pidfd < 0)
            die(3, "pidfd_open(%d): %s (raise the open-files limit for trees this big)", c->host,
                strerror(errno));
        r->npid = c->level + 1;
        memcpy(r->pid, c->nr, sizeof(int) * (size_t)r->npid);
    } else {
        struct thr *t = &thrs[r->made];
        if (t->nr[0] > 0 && t->nr[0] < PIDMAP)
            slot_of[t->nr[0]] = -(r->made + 1);
        r->npid = t->level + 1;
        memcpy(r->pid, t->nr, sizeof(int) * (size_t)r->npid);
    }
}

/* Steps one actor may run back to back: none of them kills, stops or needs the engine between. */
static int batchable(int op)
{
    return op == OP_FORK || op == OP_THREAD || op == OP_SETSID || op == OP_SETPGID ||
           op == OP_SUBREAPER || op == OP_SIGCHLD || op == OP_COMM || op == OP_WAIT;
}

static int run_engine_step(int i)
{
    struct step *s = &steps[i];
    struct result *r = &results[i];
    int a = lookup(s->actor);
    struct proc *p = a >= 0 ? &procs[a] : 0;
    int reaped = 0;
    if (!p) {
        nx(r, NX_NO_TASK);
        return 1;
    }
    if (!alive(p, &reaped)) {
        nx(r, reaped ? NX_NO_TASK : NX_ZOMBIE);
        return 1;
    }
    int sig = s->op == OP_EXIT ? (s->a & 0x7f) : 0;
    if (s->op == OP_STOP) {
        long rc = syscall(NR_pidfd_send_signal, p->pidfd, SIGSTOP, 0, 0);
        if (rc < 0) {
            finish(r, -errno);
            return 1;
        }
        wait_stopped(p);
        p->stopped = 1;
        r->kind = RES_OK;
        return 1;
    }
    if (sig) {
        if (!sig_kills(sig)) {
            nx(r, NX_SIG_NO_KILL);
            return 1;
        }
        if (p->is_init && sig != SIGKILL) {
            nx(r, NX_INIT_IGNORES);
            return 1;
        }
        int stopped = is_stopped_now(p);
        if (!stopped) {
            uint32_t cmd = ((uint32_t)i + 1) | PREP;
            if (!wait_done(dispatch(p, cmd, i + 1), p, cmd, i)) {
                nx(r, NX_DIED);
                return 1;
            }
        } else {
            struct rlimit rl;
            if (prlimit(p->host, RLIMIT_CORE, 0, &rl) == 0) {
                rl.rlim_cur = (s->a & 0x80) ? rl.rlim_max : (rl.rlim_max >= 1 ? 1 : 0);
                prlimit(p->host, RLIMIT_CORE, &rl, 0);
            }
        }
        static int kids[65536];
        int nk = children_of(p, kids, 65536);
        long rc = syscall(NR_pidfd_send_signal, p->pidfd, sig, 0, 0);
        if (rc < 0) {
            finish(r, -errno);
            return 1;
        }
        if (stopped && sig != SIGKILL)
            syscall(NR_pidfd_send_signal, p->pidfd, SIGCONT, 0, 0);
        after_exit(p, kids, nk);
        r->kind = RES_OK;
        return 1;
    }
    if (is_stopped_now(p)) {
        nx(r, NX_STOPPED);
        return 1;
    }
    static int kids[65536];
    int nk = 0;
    if (s->op == OP_EXIT) {
        nk = children_of(p, kids, 65536);
    } else if (s->op == OP_EXIT_LEADER) {
        if (!p->leader_alive) {
            nx(r, NX_LEADER_GONE);
            return 1;
        }
        if (p->threads < 0) {
            nx(r, NX_NO_THREAD);
            return 1;
        }
    }
    int j = i + 1;
    if (batchable(s->op)) {
        int made = s->op == OP_FORK || s->op == OP_THREAD;
        while (j < nsteps && steps[j].actor == s->actor && batchable(steps[j].op)) {
            /* a nested caller names a new task through the engine's map, filled after the run */
            if (p->level > 0 && made && (steps[j].op == OP_SETPGID || steps[j].op == OP_WAIT))
                break;
            made |= steps[j].op == OP_FORK || steps[j].op == OP_THREAD;
            j++;
        }
    }
    uint32_t cmd = (uint32_t)i + 1;
    if (!wait_done(dispatch(p, cmd, j), p, cmd, i)) {
        nx(r, NX_DIED);
        return 1;
    }
    for (int k = i; k < j; k++) {
        if (results[k].kind != RES_OK)
            continue;
        int op = steps[k].op;
        if (op == OP_FORK || op == OP_THREAD)
            register_birth(k);
        else if (op == OP_EXIT)
            after_exit(p, kids, nk);
        else if (op == OP_EXIT_LEADER)
            wait_leader_exit(p->host, p->nr[0]);
    }
    return j - i;
}

static void kill_all(void)
{
    if (!into_current) {
        if (root_pidfd >= 0) {
            syscall(NR_pidfd_send_signal, root_pidfd, SIGKILL, 0, 0);
            siginfo_t si;
            waitid(P_PIDFD, (id_t)root_pidfd, &si, WEXITED);
        }
        return;
    }
    for (int k = 0; k < nprocs; k++)
        if (procs[k].pidfd >= 0)
            syscall(NR_pidfd_send_signal, procs[k].pidfd, SIGKILL, 0, 0);
    for (int k = 0; k < nprocs; k++)
        if (procs[k].pidfd >= 0) {
            struct pollfd pf = {.fd = procs[k].pidfd, .events = POLLIN};
            poll(&pf, 1, 10000);
        }
    siginfo_t si;
    if (root_pidfd >= 0)
        waitid(P_PIDFD, (id_t)root_pidfd, &si, WEXITED);
}

static void unpin_all(void)
{
    static int tids[4097];
    for (int k = 0; k < nprocs; k++) {
        struct proc *q = &procs[k];
        if (!alive(q, 0))
            continue;
        int n = live_threads(q, tids);
        for (int j = 0; j < n; j++)
            sched_setaffinity(tids[j], sizeof orig_cpus, &orig_cpus);
    }
    sched_setaffinity(0, sizeof orig_cpus, &orig_cpus);
}

/* ------------------------------------------------------------------------------ input/output */
static char *next_tok(char **p)
{
    while (**p == ' ')
        (*p)++;
    if (!**p || **p == '\n')
        return 0;
    char *t = *p;
    while (**p && **p != ' ' && **p != '\n')
        (*p)++;
    if (**p)
        *(*p)++ = 0;
    return t;
}

static int tok_int(char **p, int *v)
{
    char *t = next_tok(p);
    if (!t)
        return 0;
    char *end;
    long x = strtol(t, &end, 10);
    if (*end)
        return 0;
    *v = (int)x;
    return 1;
}

static void read_plan(FILE *in)
{
    char line[1024];
    if (!fgets(line, sizeof line, in))
        die(2, "no plan on stdin");
    char *p = line;
    char *magic = next_tok(&p);
    if (!magic || strcmp(magic, "PFE1"))
        die(2, "not a pf-engine plan (expected PFE1)");
    if (!tok_int(&p, &nsteps) || !tok_int(&p, &mode_record) || !tok_int(&p, &into_current) ||
        !tok_int(&p, &use_userns) || !tok_int(&p, &root_pid) || nsteps < 0)
        die(2, "bad plan header");
    if (!fgets(scratch, sizeof scratch, in))
        die(2, "no scratch line");
    scratch[strcspn(scratch, "\n")] = 0;
    if (!strcmp(scratch, "-"))
        scratch[0] = 0;
    steps = calloc((size_t)nsteps + 1, sizeof *steps);
    results = mmap(0, ((size_t)nsteps + 1) * sizeof *results, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!steps || results == MAP_FAILED)
        die(3, "out of memory for %d steps", nsteps);
    max_procs = 1;
    max_thrs = 0;
    for (int i = 0; i < nsteps; i++) {
        struct step *s = &steps[i];
        if (!fgets(line, sizeof line, in))
            die(2, "plan ends at step %d of %d", i + 1, nsteps);
        p = line;
        if (!tok_int(&p, &s->op) || !tok_int(&p, &s->actor) || !tok_int(&p, &s->a) ||
            !tok_int(&p, &s->b) || !tok_int(&p, &s->flags) || !tok_int(&p, &s->npid) ||
            s->npid < 0 || s->npid > MAXLVL || s->op < OP_FORK || s->op > OP_COMM)
            die(2, "bad step %d", i + 1);
        for (int k = 0; k < s->npid; k++)
            if (!tok_int(&p, &s->pid[k]))
                die(2, "bad pid list in step %d", i + 1);
        char *name = next_tok(&p);
        if (s->op == OP_COMM) {
            if (!name || strlen(name) > 15)
                die(2, "bad name in step %d", i + 1);
            strcpy(s->name, name);
        }
        if (s->op == OP_FORK)
            max_procs++;
        if (s->op == OP_THREAD)
            max_thrs++;
    }
}

static void write_results(void)
{
    for (int i = 0; i < nsteps; i++) {
        struct result *r = &results[i];
        printf("R %d %d %d %d", i, r->kind, r->err, r->extra);
        printf(" %d", r->npid);
        for (int k = 0; k < r->npid; k++)
            printf(" %d", r->pid[k]);
        if (r->kind == RES_ERRNO)
            for (int k = 0; k < 9; k++)
                printf(" %d", r->met[k]);
        printf("\n");
    }
    for (int k = 0; k < nprocs; k++) {
        struct proc *q = &procs[k];
        int reaped;
        int live = alive(q, &reaped);
        if (!live)
            continue;
        printf("T %d %d %d\n", q->nr[0], q->host, q->subreaper);
    }
    if (aborted_at >= 0)
        printf("ABORTED %d\n", aborted_at);
    printf("DONE\n");
    fflush(stdout);
}

static void write_id_map(int pid, const char *file, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0)
        die(3, "cannot write %s: %s", path, strerror(errno));
    close(fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL); /* an ignored SIGCHLD survives exec: it would auto-reap the root */
    read_plan(stdin);

    /* /proc must number tasks as this namespace does (the tasks read their pid from it) */
    char buf[4096];
    char self[32];
    ssize_t n = readlink("/proc/self", self, sizeof self - 1);
    if (n <= 0 || (self[n] = 0, atoi(self) != getpid()))
        die(3, "/proc is not mounted for this pid namespace (it says self is %s, not %d)",
            n > 0 ? self : "?", getpid());
    if (read_file("/proc/self/status", buf, sizeof buf) > 0) {
        char *q = strstr(buf, "\nNSpid:");
        int cnt = 0;
        if (q) {
            q += 7;
            while (*q && *q != '\n') {
                while (*q == ' ' || *q == '\t')
                    q++;
                if (*q >= '0' && *q <= '9') {
                    cnt++;
                    while (*q >= '0' && *q <= '9')
                        q++;
                } else {
                    break;
                }
            }
        }
        /* proc_base: /proc columns above the top namespace of the tree */
        proc_base = into_current ? cnt - 1 : cnt;
    }

    /* A death with a core dump writes this whole shared address space (every task's stack, the
     * pid map): keep dumps to their headers. The filter is per address space, so one write
     * covers every task; a dump with nothing in it still counts as dumped (the 0x80 bit). */
    int cf = open("/proc/self/coredump_filter", O_WRONLY | O_CLOEXEC);
    if (cf >= 0) {
        if (write(cf, "0\n", 2) < 0) { /* an old kernel without the file: dumps are just bigger */
        }
        close(cf);
    }

    struct rlimit nof;
    if (getrlimit(RLIMIT_NOFILE, &nof) == 0 && nof.rlim_cur < nof.rlim_max) {
        nof.rlim_cur = nof.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nof);
    }

    size_t nstacks = (size_t)max_procs + (size_t)max_thrs;
    procs = mmap(0, sizeof(struct proc) * (size_t)max_procs, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    thrs = mmap(0, sizeof(struct thr) * ((size_t)max_thrs + 1), PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    slot_of = mmap(0, sizeof(int32_t) * PIDMAP, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    stacks = mmap(0, STACK_SIZE * nstacks, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (procs == MAP_FAILED || thrs == MAP_FAILED || slot_of == MAP_FAILED || stacks == MAP_FAILED)
        die(3, "cannot map memory for %d tasks", max_procs + max_thrs);

    /* Since 6.16 private futexes hash into a table per address space, sized for its threads. Here
     * thousands of processes share one address space and each waits on its own word: size the table
     * for them, or every wake walks a chain as long as the tree (an older kernel ignores this). */
    long slots = 16;
    while (slots < 2L * (max_procs + max_thrs) && slots < 262144)
        slots <<= 1;
    prctl(PR_FUTEX_HASH_, PR_FUTEX_HASH_SET_SLOTS_, slots, 0, 0);

    /* One step runs at a time, so run them all on one CPU: a wakeup that crosses CPUs can wait for
     * an idle (virtual) CPU to come back, which cost milliseconds per step where sessions put the
     * tasks in their own scheduler autogroups. Every task inherits the pin at fork; the original
     * mask is given back to each at the end. */
    pinned = 0;
    if (!getenv("PF_ENGINE_NOPIN") && sched_getaffinity(0, sizeof orig_cpus, &orig_cpus) == 0) {
        cpu_set_t one;
        int cpu = sched_getcpu();
        CPU_ZERO(&one);
        if (cpu >= 0 && CPU_ISSET(cpu, &orig_cpus)) {
            CPU_SET(cpu, &one);
            pinned = sched_setaffinity(0, sizeof one, &one) == 0;
        }
    }

    /* the root: pid 1 of a new namespace, or root_pid in ours; in the restorer's group and session */
    struct proc *r0 = &procs[0];
    memset(r0, 0, sizeof *r0);
    r0->worker = -1;
    r0->leader_alive = 1;
    r0->threads = -1;
    r0->ns = 0;
    r0->ns_up = -1;
    r0->is_init = into_current ? 0 : 1;
    r0->nr[0] = into_current ? root_pid : 1;
    nprocs = 1;
    struct clone_args_ ca;
    memset(&ca, 0, sizeof ca);
    int set_tid[1] = {root_pid};
    ca.flags = CL_VM | CL_PIDFD;
    if (!into_current)
        ca.flags |= CL_NEWPID | (use_userns ? CL_NEWUSER : 0);
    else if (root_pid > 0) {
        ca.set_tid = (uint64_t)(uintptr_t)set_tid;
        ca.set_tid_size = 1;
    }
    ca.pidfd = (uint64_t)(uintptr_t)&root_pidfd;
    ca.exit_signal = SIGCHLD;
    ca.stack = (uint64_t)(uintptr_t)stacks;
    ca.stack_size = STACK_SIZE;
    long rc = clone3_run(&ca, root_main, 0);
    if (rc < 0) {
        int e = (int)-rc;
        if (into_current)
            die(3, "cannot create the root with pid %d: %s", root_pid, strerror(e));
        die(3, "cannot create a pid namespace%s: %s", use_userns ? " with a user namespace" : "",
            strerror(e));
    }
    root_host = (int)rc;
    r0->host = root_host;
    r0->pidfd = root_pidfd;
    if (into_current) {
        if (root_pid <= 0)
            r0->nr[0] = root_host;
    }
    if (use_userns && !into_current) {
        char map[64];
        snprintf(map, sizeof map, "0 %d 1\n", (int)getuid());
        write_id_map(root_host, "uid_map", map);
        write_id_map(root_host, "setgroups", "deny\n");
        snprintf(map, sizeof map, "0 %d 1\n", (int)getgid());
        write_id_map(root_host, "gid_map", map);
    }
    slot_of[r0->nr[0]] = 1;
    printf("ROOT %d\n", root_host); /* early: the driver can remove the tree if we crash */
    fflush(stdout);
    st(&root_go, 1);
    fwake(&root_go, 1);
    /* the engine itself must outlive a ^C to the restorer's group: the driver decides */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    int trace = getenv("PF_ENGINE_TRACE") != 0;
    for (int i = 0; i < nsteps;) {
        if (aborted_at >= 0) {
            if (results[i].kind == RES_NONE)
                results[i].kind = RES_SKIPPED;
            i++;
            continue;
        }
        struct timespec t0, t1;
        if (trace)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        int n = run_engine_step(i);
        if (trace) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            fprintf(stderr, "steps %d-%d op %d actor %d: %ld us\n", i + 1, i + n, steps[i].op,
                    steps[i].actor,
                    (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
        }
        for (int k = i; k < i + n && aborted_at < 0; k++)
            if (!mode_record && results[k].kind != RES_OK)
                aborted_at = k;
        i = aborted_at >= 0 ? aborted_at + 1 : i + n;
    }
    if (aborted_at >= 0)
        kill_all();
    else if (pinned)
        unpin_all();
    write_results();
    if (aborted_at >= 0)
        return 0;
    for (;;) {
        int c = fgetc(stdin);
        if (c == 'D') {
            printf("DETACHED\n");
            fflush(stdout);
            return 0;
        }
        if (c == 'K' || c == EOF) {
            kill_all();
            printf("KILLED\n");
            fflush(stdout);
            return 0;
        }
    }
}
