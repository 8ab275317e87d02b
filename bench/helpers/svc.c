/* svc: the benchmark's service. Every init runs this same program as each
 * service (as `./run` in a service directory, with that directory as cwd).
 * Its behaviour comes from the directory's name (the prefix before '-'):
 *
 *   svc       start, then wait; SIGTERM: record "term" and exit 0
 *   stubborn  start, then wait ignoring SIGTERM (only SIGKILL ends it)
 *   crash     start, then exit 1 at once
 *   runs2s    start, run 2 s, record "exit", exit 1
 *   storm     start, make BENCH_STORM (5000) double-forked orphans, record
 *             "stormdone", then wait like svc
 *   burst     start, leave BENCH_BURST (1000) live orphans blocked on a pipe,
 *             record "burstready"; on SIGUSR1 record "release" and close the
 *             pipe so that they all exit at once; then wait like svc
 *
 * Events go to $BENCH_EVENTS as "<CLOCK_MONOTONIC ns> <event> <name> <pid>\n",
 * one write(2) each on an O_APPEND fd, so lines from many services never mix.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int events = -1;
static char name[256];
static volatile sig_atomic_t released;

static void record(const char *event) {
    struct timespec ts;
    char line[512];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int n = snprintf(line, sizeof line, "%lld %s %s %d\n",
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, event, name, (int)getpid());
    if (events >= 0 && n > 0) {
        ssize_t w = write(events, line, (size_t)n);
        (void)w;
    }
}

static void on_term(int sig) {
    (void)sig;
    record("term");
    _exit(0);
}

static void on_usr1(int sig) {
    (void)sig;
    released = 1;
}

static long env_long(const char *var, long dflt) {
    const char *v = getenv(var);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void storm(long n) {
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0) { usleep(1000); i--; continue; }
        if (child == 0) {
            if (fork() < 0) _exit(1);
            _exit(0); /* the grandchild exits too: an orphan for PID 1 to reap */
        }
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
    }
    record("stormdone");
}

static void burst(long n) {
    int p[2];
    if (pipe(p) < 0) { record("error"); return; }
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0) { usleep(1000); i--; continue; }
        if (child == 0) {
            pid_t g = fork();
            if (g == 0) {
                char c;
                close(p[1]);
                while (read(p[0], &c, 1) < 0 && errno == EINTR) {}
                _exit(0);
            }
            _exit(g < 0);
        }
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
    }
    close(p[0]);
    record("burstready");
    sigset_t none, usr1;
    sigemptyset(&none);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    while (!released) sigsuspend(&none);
    record("release");
    close(p[1]);
}

int main(void) {
    char cwd[4096];
    const char *path = getenv("BENCH_EVENTS");
    if (path) events = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (getcwd(cwd, sizeof cwd)) snprintf(name, sizeof name, "%s", basename(cwd));
    char kind[256];
    snprintf(kind, sizeof kind, "%s", name);
    char *dash = strchr(kind, '-');
    if (dash) *dash = 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    record("start");

    if (!strcmp(kind, "crash")) { record("exit"); return 1; }
    if (!strcmp(kind, "runs2s")) { sleep(2); record("exit"); return 1; }
    if (!strcmp(kind, "stubborn")) signal(SIGTERM, SIG_IGN);
    if (!strcmp(kind, "storm")) storm(env_long("BENCH_STORM", 5000));
    if (!strcmp(kind, "burst")) burst(env_long("BENCH_BURST", 1000));
    for (;;) pause();
}
