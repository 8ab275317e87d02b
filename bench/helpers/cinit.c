/* cinit: the physical baseline for reaping. The least a PID 1 can do: start
 * its one child, reap every process that dies (waitpid(-1, WNOHANG) on each
 * SIGCHLD, taken with sigwaitinfo, so no handler and no extra wakeups), pass
 * SIGTERM/SIGINT/SIGHUP to the child, and exit with the child's status. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: cinit COMMAND...\n"); return 2; }
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    pid_t child = fork();
    if (child < 0) { perror("cinit: fork"); return 1; }
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[1], argv + 1);
        perror("cinit: exec");
        _exit(127);
    }
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
            kill(child, sig);
        } else if (sig == SIGCHLD) {
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (pid == child)
                    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
        }
    }
}
