/* syslogflood: the syslog scenario's sender. Sends datagrams to a Unix
 * datagram socket as glibc's syslog(3) does: one blocking send() each on a
 * connected socket, glibc's format, "<14>Mmm dd hh:mm:ss flood[PID]: ".
 *
 *   syslogflood SOCKET COUNT RATE LEN
 *       send COUNT messages of LEN bytes ("message NNNNNNNNN" and padding
 *       after the header), RATE per second (paced against CLOCK_MONOTONIC
 *       every 32 messages), or as fast as it can with RATE 0
 *
 * When done it prints "sent N refused N seconds S" on stdout: a send the
 * kernel refused (other than EINTR) is counted and not retried, so the
 * harness can hold the receiver's count against the datagrams the kernel
 * took. A blocking sender is never refused for a full queue: it waits,
 * as every program calling syslog(3) would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: syslogflood SOCKET COUNT RATE LEN\n");
        return 2;
    }
    long long count = strtoll(argv[2], NULL, 10);
    long long rate = strtoll(argv[3], NULL, 10);
    long len = strtol(argv[4], NULL, 10);
    if (count < 0 || rate < 0 || len < 48 || len > 65536) {
        fprintf(stderr, "syslogflood: bad COUNT, RATE or LEN\n");
        return 2;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof addr.sun_path) {
        fprintf(stderr, "syslogflood: socket path too long\n");
        return 2;
    }
    strcpy(addr.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("syslogflood: connect");
        return 1;
    }
    char *buf = malloc((size_t)len);
    if (!buf) return 1;
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
    int head = snprintf(buf, (size_t)len, "<14>%s flood[%d]: message ", stamp, (int)getpid());
    for (long i = head; i < len; i++) buf[i] = 'a' + (char)(i % 26);

    long long sent = 0, refused = 0, start = now_ns();
    for (long long i = 0; i < count; i++) {
        if (rate > 0 && i % 32 == 0) {
            long long due = start + i * 1000000000LL / rate;
            struct timespec ts = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        }
        char num[24];
        snprintf(num, sizeof num, "%09lld ", i);
        memcpy(buf + head, num, strlen(num) < (size_t)(len - head) ? strlen(num) : (size_t)(len - head));
        for (;;) {
            if (send(fd, buf, (size_t)len, 0) >= 0) {
                sent++;
            } else if (errno == EINTR) {
                continue;
            } else {
                refused++;
            }
            break;
        }
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    printf("sent %lld refused %lld seconds %.6f\n", sent, refused, seconds);
    return 0;
}
