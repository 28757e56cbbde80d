/* Death-test harness; see death.h. */
#include "death.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

/* cmocka turns crash signals into failed tests; a child must die for real,
 * with the dispositions the program started with (saved before main, after
 * any sanitizer runtime installed its own). */
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS };
#define N_CRASH (sizeof crash_signals / sizeof crash_signals[0])
static struct sigaction saved[N_CRASH];

__attribute__((constructor)) static void death_save_signals(void)
{
    for (size_t i = 0; i < N_CRASH; i++)
        sigaction(crash_signals[i], NULL, &saved[i]);
}

static int expect_fd = -1;

void death_expect(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof line - 2)
        n = (int)(sizeof line - 2);
    line[n++] = '\n';
    ssize_t w = write(expect_fd, line, (size_t)n);
    (void)w;
}

/* Read fd to EOF into buf (keeps the first cap - 1 bytes). */
static size_t slurp(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char tmp[4096];
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
        memcpy(buf + len, tmp, take);
        len += take;
    }
    buf[len] = '\0';
    return len;
}

void death_run(struct death *d, void (*misuse)(void), const char *const *env)
{
    int out[2], exp[2];
    memset(d, 0, sizeof *d);
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(exp), 0);
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        for (size_t i = 0; i < N_CRASH; i++)
            sigaction(crash_signals[i], &saved[i], NULL);
        close(out[0]);
        close(exp[0]);
        dup2(out[1], STDERR_FILENO);
        close(out[1]);
        expect_fd = exp[1];
        for (; env != NULL && *env != NULL; env++)
            putenv((char *)*env);
        misuse();
        _exit(0);                       /* the misuse went unnoticed */
    }
    close(out[1]);
    close(exp[1]);
    /* The announcements are short and written first: the child never
     * blocks on them while the parent drains its stderr. */
    d->outlen = slurp(out[0], d->out, sizeof d->out);
    char ebuf[DEATH_MAX_EXPECT * 256];
    slurp(exp[0], ebuf, sizeof ebuf);
    close(out[0]);
    close(exp[0]);
    while (waitpid(pid, &d->status, 0) < 0)
        assert_int_equal(errno, EINTR);
    for (char *line = ebuf, *nl; d->nexpect < DEATH_MAX_EXPECT && (nl = strchr(line, '\n'));
         line = nl + 1) {
        size_t n = (size_t)(nl - line);
        if (n > sizeof d->expect[0] - 1)
            n = sizeof d->expect[0] - 1;
        memcpy(d->expect[d->nexpect], line, n);
        d->expect[d->nexpect++][n] = '\0';
    }
}

int death_output_has(const struct death *d, const char *s)
{
    return strstr(d->out, s) != NULL;
}

static void show(const struct death *d)
{
    if (WIFSIGNALED(d->status))
        print_message("child killed by signal %d (%s)\n", WTERMSIG(d->status),
                      strsignal(WTERMSIG(d->status)));
    else if (WIFEXITED(d->status))
        print_message("child exited with status %d\n", WEXITSTATUS(d->status));
    print_message("child stderr:\n%s\n", d->outlen ? d->out : "(empty)");
    for (int i = 0; i < d->nexpect; i++)
        print_message("expected text: %s\n", d->expect[i]);
}

static void check_announced(const struct death *d)
{
    if (d->nexpect == 0) {
        show(d);
        fail_msg("the child announced no expected text");
    }
    for (int i = 0; i < d->nexpect; i++)
        if (!death_output_has(d, d->expect[i])) {
            show(d);
            fail_msg("stderr lacks \"%s\"", d->expect[i]);
        }
}

/* The report, into the test log: docs/hardening.md quotes these. */
static void log_report(const struct death *d)
{
    if (d->outlen > 0)
        print_message("    child stderr: %s%s", d->out, d->out[d->outlen - 1] == '\n' ? "" : "\n");
}

void death_assert_signal(const struct death *d, int sig)
{
    log_report(d);
    if (!WIFSIGNALED(d->status) || WTERMSIG(d->status) != sig) {
        show(d);
        fail_msg("expected the child to die of signal %d (%s)", sig, strsignal(sig));
    }
    check_announced(d);
}

void death_assert_exit(const struct death *d, int code)
{
    if (!WIFEXITED(d->status) || WEXITSTATUS(d->status) != code) {
        show(d);
        fail_msg("expected the child to exit with status %d", code);
    }
    if (code != 0)
        check_announced(d);
}
