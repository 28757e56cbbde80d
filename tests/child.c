/* Forked-child helpers for the libarena tests; see child.h. */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Signals a test framework may catch to turn a crash into a failed test.
 * A child must crash for real instead, so it gets back the dispositions
 * the program started with (saved before main, after any sanitizer
 * runtime installed its own handlers). */
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS };
#define N_CRASH_SIGNALS (sizeof crash_signals / sizeof crash_signals[0])
static struct sigaction saved_actions[N_CRASH_SIGNALS];

__attribute__((constructor)) static void save_signal_actions(void)
{
    for (size_t i = 0; i < N_CRASH_SIGNALS; i++)
        sigaction(crash_signals[i], NULL, &saved_actions[i]);
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void vnote(const char *prefix, const char *fmt, va_list ap)
{
    char buf[1024];
    size_t len = 0;
    if (prefix) {
        int n = snprintf(buf, sizeof buf, "%s", prefix);
        len = n > 0 ? (size_t)n : 0;
    }
    int n = vsnprintf(buf + len, sizeof buf - len - 1, fmt, ap);
    if (n > 0)
        len += (size_t)n < sizeof buf - len - 1 ? (size_t)n : sizeof buf - len - 2;
    buf[len++] = '\n';
    write_all(STDERR_FILENO, buf, len);
}

void child_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(NULL, fmt, ap);
    va_end(ap);
}

void child_fail(const char *file, int line, const char *fmt, ...)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vnote(prefix, fmt, ap);
    va_end(ap);
    _exit(1);
}

int child_run(const char *name, child_fn fn, void *arg)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", name, strerror(errno));
        return 127;
    }
    if (pid == 0) {
        /* Die with the test program (e.g. when meson's timeout kills it). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        for (size_t i = 0; i < N_CRASH_SIGNALS; i++)
            sigaction(crash_signals[i], &saved_actions[i], NULL);
        fn(arg);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "%s: waitpid: %s\n", name, strerror(errno));
            return 127;
        }
    }
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) != 0)
            fprintf(stderr, "%s: child exited with status %d\n", name,
                    WEXITSTATUS(status));
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: child killed by signal %d (%s)\n", name,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
        return 128 + WTERMSIG(status);
    }
    fprintf(stderr, "%s: child ended with wait status 0x%x\n", name, status);
    return 127;
}

uint64_t test_env_u64(const char *name, uint64_t def)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "ignoring %s=%s: not a number\n", name, s);
        return def;
    }
    return v;
}

int test_under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif

uint64_t test_rss_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    CHECKF(fd >= 0, "open /proc/self/statm: %s", strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    CHECKF(n > 0, "read /proc/self/statm failed");
    buf[n] = '\0';
    unsigned long long size, resident;
    CHECKF(sscanf(buf, "%llu %llu", &size, &resident) == 2, "bad /proc/self/statm: %s", buf);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

int test_instrumented(void)
{
    return TEST_SANITIZED || test_under_valgrind();
}

uint64_t test_count(const char *name, uint64_t def, uint64_t def_slow)
{
    return test_env_u64(name, test_instrumented() ? def_slow : def);
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Word k of the pattern for tag; byte j of the block is byte j % 8 of word
 * j / 8 in memory order, so a prefix of a pattern is the same pattern. */
static inline uint64_t pattern_word(uint64_t h, size_t k)
{
    return h ^ ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ULL);
}

void test_fill(void *p, size_t n, uint64_t tag)
{
    unsigned char *b = p;
    uint64_t h = mix64(tag);
    size_t words = n / 8;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = pattern_word(h, k);
        memcpy(b + 8 * k, &w, 8);
    }
    if (n % 8) {
        uint64_t w = pattern_word(h, words);
        memcpy(b + 8 * words, &w, n % 8);
    }
}

size_t test_verify(const void *p, size_t n, uint64_t tag)
{
    const unsigned char *b = p;
    uint64_t h = mix64(tag);
    size_t words = n / 8;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = pattern_word(h, k);
        if (memcmp(b + 8 * k, &w, 8) != 0)
            goto bytewise;
    }
    if (n % 8) {
        uint64_t w = pattern_word(h, words);
        if (memcmp(b + 8 * words, &w, n % 8) != 0)
            goto bytewise;
    }
    return (size_t)-1;
bytewise:
    for (size_t i = 0; i < n; i++) {
        uint64_t w = pattern_word(h, i / 8);
        if (b[i] != ((const unsigned char *)&w)[i % 8])
            return i;
    }
    return (size_t)-1;
}
