/*
 * spawn: run a command and write its resource usage to a file.
 *
 *     spawn STATS_FILE COMMAND [ARG...]
 *
 * The benchmark's own Python process is large; a child forked from it starts with that
 * process's pages mapped, and Linux records them in the child's peak RSS at exec.  This
 * helper is tiny, so the peak RSS that wait4 reports for the command it forks is the
 * command's own (with every descendant it waited for).  STATS_FILE receives one line:
 * "exit_status user_seconds sys_seconds maxrss_kib".  The exit code is the command's.
 *
 * Build: gcc -O2 -Wall -o spawn spawn.c
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s STATS_FILE COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 127;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("wait4");
            return 127;
        }
    }
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "%d %ld.%06ld %ld.%06ld %ld\n", status, (long)ru.ru_utime.tv_sec,
                (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
                ru.ru_maxrss);
        fclose(f);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
