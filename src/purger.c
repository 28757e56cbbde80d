/*
 * The background purger (off by default).
 *
 * The hold policy (hold.c) gives memory back only when the allocator is
 * called: a process that goes idle keeps what it held at that moment.  The
 * purger is a thread that looks at every heap every half delay and gives
 * back what stayed free since its previous look: dirty free pools are
 * purged, empty arenas go to the global cache and from there to the OS.
 * Memory freed at time t is therefore given back by t + delay.  It takes
 * each heap's arena lock in turn (never the global lock while holding one)
 * and never allocates.
 *
 * Started by ARENA_PURGER=1 (delay ARENA_PURGE_DELAY_MS, default 1000 ms)
 * when the library is loaded, or by arena_purger_start(); stopped by
 * arena_purger_stop().  A fork() child has no purger: a child that lives
 * on may start its own.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop, cond_ready;
    unsigned delay_ms;
    unsigned restarts;                  /* arena_purger_start calls: a new
                                           delay starts a new wait        */
} purger = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *purger_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&purger.lock);
    while (!purger.stop) {
        unsigned restarts = purger.restarts;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)purger.delay_ms * 500000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        int rc = 0;
        while (!purger.stop && rc != ETIMEDOUT && restarts == purger.restarts)
            rc = pthread_cond_timedwait(&purger.wake, &purger.lock, &until);
        if (purger.stop)
            break;
        if (restarts != purger.restarts)
            continue;                   /* a new delay: wait again, from now */
        pthread_mutex_unlock(&purger.lock);
        ar_heaps_purge_idle();
        pthread_mutex_lock(&purger.lock);
    }
    pthread_mutex_unlock(&purger.lock);
    return NULL;
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&purger.lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&purger.lock);
}

static void fork_child(void)
{
    purger.running = false;
    purger.cond_ready = false;
    pthread_mutex_unlock(&purger.lock);
}

int arena_purger_start(unsigned delay_ms)
{
    static atomic_flag handlers = ATOMIC_FLAG_INIT;
    if (delay_ms == 0)
        return EINVAL;
    if (!atomic_flag_test_and_set(&handlers))
        pthread_atfork(fork_prepare, fork_parent, fork_child);
    pthread_mutex_lock(&purger.lock);
    purger.delay_ms = delay_ms;
    purger.restarts++;
    if (purger.running) {
        pthread_cond_signal(&purger.wake);
        pthread_mutex_unlock(&purger.lock);
        return 0;
    }
    if (!purger.cond_ready) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&purger.wake, &attr);
        pthread_condattr_destroy(&attr);
        purger.cond_ready = true;
    }
    purger.stop = false;
    /* The purger takes no signals: they belong to the program's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&purger.thread, NULL, purger_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    purger.running = rc == 0;
    pthread_mutex_unlock(&purger.lock);
    return rc == 0 ? 0 : EAGAIN;
}

void arena_purger_stop(void)
{
    pthread_mutex_lock(&purger.lock);
    if (!purger.running) {
        pthread_mutex_unlock(&purger.lock);
        return;
    }
    purger.stop = true;
    pthread_cond_signal(&purger.wake);
    pthread_t t = purger.thread;
    pthread_mutex_unlock(&purger.lock);
    pthread_join(t, NULL);
    pthread_mutex_lock(&purger.lock);
    purger.running = false;
    pthread_mutex_unlock(&purger.lock);
}

/* ARENA_PURGER=1, read straight from the environment: this runs when the
 * library is loaded, before (and independently of) the first allocation. */
void ar_purger_from_options(void)
{
    const char *on = getenv("ARENA_PURGER");
    if (on == NULL || strcmp(on, "1") != 0)
        return;
    unsigned long delay = 1000;
    const char *d = getenv("ARENA_PURGE_DELAY_MS");
    if (d != NULL && *d) {
        char *end;
        unsigned long v = strtoul(d, &end, 10);
        if (*end == '\0' && v > 0 && v <= 3600000)
            delay = v;
    }
    arena_purger_start((unsigned)delay);
}
