/* flood: the output scenario's service. Every path of the scenario (a raw
 * pipe, sed, s6-log, supervisord, baseinit in each output mode) runs this
 * same program as the service whose stdout is relayed.
 *
 *   flood BYTES LEN       write BYTES bytes to stdout as LEN-byte lines
 *                         (LEN-1 printable ASCII characters and a newline),
 *                         in write()s of a prebuilt buffer of whole lines
 *                         (the largest multiple of LEN up to 64 KiB, a
 *                         pipe's default capacity); BYTES is rounded down to
 *                         whole lines
 *   flood --ticks N MS    write N lone lines "t=<CLOCK_MONOTONIC ns>; ...\n",
 *                         one write() each, MS milliseconds apart: the
 *                         harness takes each line's arrival time less the
 *                         time it carries
 *
 * Before its first byte it records "ready" and waits for SIGUSR1 from the
 * harness (the gate: the harness measures the relay idle first, and times
 * every path from its first service byte); it records "flooded" after its
 * last byte and exits 0. Events go to $BENCH_EVENTS as
 * "<CLOCK_MONOTONIC ns> <event> <name> <pid>\n", like svc's, the name being
 * $BENCH_NAME or else the working directory's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int events = -1;
static char name[256];

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void record(const char *event) {
    char line[512];
    int n = snprintf(line, sizeof line, "%lld %s %s %d\n", now_ns(), event, name, (int)getpid());
    if (events >= 0 && n > 0) {
        ssize_t w = write(events, line, (size_t)n);
        (void)w;
    }
}

static int write_all(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(1, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: flood BYTES LEN | flood --ticks N MS\n");
    exit(2);
}

int main(int argc, char **argv) {
    char cwd[4096];
    const char *path = getenv("BENCH_EVENTS");
    const char *given = getenv("BENCH_NAME");
    if (path) events = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (given && *given) snprintf(name, sizeof name, "%s", given);
    else if (getcwd(cwd, sizeof cwd)) snprintf(name, sizeof name, "%s", basename(cwd));
    if (argc != 3 && argc != 4) usage();
    int ticks = !strcmp(argv[1], "--ticks");
    if (ticks != (argc == 4)) usage();

    sigset_t usr1;
    int sig;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    record("ready");
    sigwait(&usr1, &sig);

    if (ticks) {
        long n = strtol(argv[2], NULL, 10), ms = strtol(argv[3], NULL, 10);
        struct timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        for (long i = 0; i < n; i++) {
            char line[128];
            int len = snprintf(line, sizeof line, "t=%lld; a lone line, %ld of %ld\n", now_ns(), i + 1, n);
            if (write_all(line, (size_t)len) < 0) return 1;
            next.tv_nsec += ms * 1000000L;
            while (next.tv_nsec >= 1000000000L) {
                next.tv_nsec -= 1000000000L;
                next.tv_sec++;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
        }
        record("flooded");
        return 0;
    }

    long long bytes = strtoll(argv[1], NULL, 10);
    long len = strtol(argv[2], NULL, 10);
    if (bytes < 0 || len < 2 || len > 65536) usage();
    size_t per = 65536 / (size_t)len; /* whole lines per write */
    size_t size = per * (size_t)len;
    char *buf = malloc(size);
    if (!buf) return 1;
    static const char text[] = "flood: a service line of plain ASCII text, the same in every path of the benchmark. ";
    for (size_t i = 0; i < size; i++) {
        size_t col = i % (size_t)len;
        buf[i] = col == (size_t)len - 1 ? '\n' : text[col % (sizeof text - 1)];
    }
    long long left = bytes / len * len;
    while (left > 0) {
        size_t chunk = left < (long long)size ? (size_t)left : size;
        if (write_all(buf, chunk) < 0) return 1;
        left -= (long long)chunk;
    }
    record("flooded");
    return 0;
}
