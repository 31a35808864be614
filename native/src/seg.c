/* The writer's side of the shared-memory segment: create, lock, lay out, heartbeat, wake, stats. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fh/seg.h"

static size_t up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

typedef struct seg_layout {
    size_t books, lkey, lagg, ladders, lslots, events, stats, total;
} seg_layout_t;

static int seg_layout(const fh_seg_cfg_t *c, seg_layout_t *l)
{
    if (!c)
        return FH_ERR("no segment configuration");
    if (c->max_levels < 8 || c->max_levels > (1u << 30))
        return FH_ERR("max_levels must be 8..%u, not %u", 1u << 30, c->max_levels);
    if (c->event_capacity < 64 || c->event_capacity > (1u << 26) || (c->event_capacity & (c->event_capacity - 1)))
        return FH_ERR("event_capacity must be a power of two in 64..%u, not %u", 1u << 26, c->event_capacity);
    if (c->depth < 1 || c->depth > 64)
        return FH_ERR("depth must be 1..64, not %u", c->depth);
    if (c->ladder_books > FH_SEG_MAX_LADDER_BOOKS)
        return FH_ERR("ladder_books must be 0..%u, not %u", FH_SEG_MAX_LADDER_BOOKS, c->ladder_books);
    size_t off = up(sizeof(fh_shm_hdr_t), 4096);
    l->books = off;
    off = up(off + FH_SHM_BOOKS * sizeof(fh_shm_book_t), 4096);
    l->lkey = off;
    off = up(off + (size_t)c->max_levels * sizeof(uint32_t), 4096);
    l->lagg = off;
    off = up(off + (size_t)c->max_levels * sizeof(fh_shm_agg_t), 4096);
    /* a pair of ladder sides per ladder book, and the pair that every other book shares (never in use) */
    l->ladders = off;
    off = up(off + 2 * ((size_t)c->ladder_books + 1) * sizeof(fh_shm_lside_t), 4096);
    l->lslots = off;
    off = up(off + 2 * ((size_t)c->ladder_books + 1) * FH_SHM_LADDER_W * sizeof(fh_shm_agg_t), 4096);
    l->events = off;
    off = up(off + (size_t)c->event_capacity * sizeof(fh_shm_event_t), 4096);
    l->stats = off;
    off = up(off + sizeof(fh_shm_stats_t), 4096);
    l->total = up(off, 2u << 20); /* whole hugepages, so that hugetlbfs takes it too */
    return 0;
}

size_t fh_seg_footprint(const fh_seg_cfg_t *cfg)
{
    seg_layout_t l;
    return seg_layout(cfg, &l) ? 0 : l.total;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* TSC frequency from a 20 ms calibration against CLOCK_MONOTONIC (0 where there is no TSC). */
static uint64_t tsc_hz(void)
{
#if defined(__x86_64__)
    struct timespec a, b, nap = { 0, 20000000 };
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t t0 = __builtin_ia32_rdtsc();
    nanosleep(&nap, NULL);
    uint64_t t1 = __builtin_ia32_rdtsc();
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return ns > 0 ? (uint64_t)((double)(t1 - t0) * 1e9 / ns) : 0;
#else
    return 0;
#endif
}

/* Open path for a new writer: refuse a live writer's file, replace a stale one. */
static int open_locked(const char *path, int *fd_out)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            int pid = 0;
            fh_shm_hdr_t h;
            if (pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && h.magic == FH_SHM_MAGIC)
                pid = (int)h.writer_pid;
            close(fd);
            return FH_ERR("segment %s is held by another writer (pid %d): stop that instance (kill %d) or give "
                          "this one another name", path, pid, pid);
        }
        /* stale: its writer is gone. Unlink it (readers still mapping it see a dead writer) and start anew. */
        unlink(path);
        close(fd);
    }
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return FH_ERR("cannot create segment %s: %s%s", path, strerror(errno),
                      errno == EEXIST ? " (another writer is starting on it)"
                      : errno == ENOENT ? " (the directory does not exist: mount hugetlbfs or use /dev/shm)" : "");
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        close(fd);
        return FH_ERR("segment %s was locked by another writer as it was created", path);
    }
    *fd_out = fd;
    return 0;
}

static void *map_file(int fd, size_t size, const char *path)
{
    if (ftruncate(fd, (off_t)size)) {
        FH_ERR("cannot size segment %s to %zu bytes: %s%s", path, size, strerror(errno),
               errno == EINVAL || errno == ENOMEM ? " (no free hugepages? use /dev/shm or raise vm.nr_hugepages)" : "");
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) { /* a hugetlbfs file is sized without its pages; they are taken here */
        FH_ERR("cannot map segment %s (%zu bytes): %s%s", path, size, strerror(errno),
               errno == ENOMEM ? " (on hugetlbfs: too few free hugepages for it; raise vm.nr_hugepages or the "
                                 "mount's size=, or use /dev/shm; else free memory)" : "");
        return NULL;
    }
    return p;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14's value: a C library older than the kernel may not define it */
#endif

int fh_prefault(void *p, size_t len)
{
    /* The kernel populates without a fault a page, and a program under valgrind does not run the memset
     * instrumented (it was 99 % of a short run's instructions). EINVAL before Linux 5.14. */
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno == EINVAL) {
        memset(p, 0, len);
        return 0;
    }
    return FH_ERR("cannot fault in %zu bytes: %s", len, strerror(errno));
}

fh_seg_t *fh_seg_create(const fh_seg_cfg_t *cfg)
{
    seg_layout_t l;
    if (seg_layout(cfg, &l))
        return NULL;
    fh_seg_t *s = calloc(1, sizeof *s);
    if (!s) {
        FH_ERR("out of memory");
        return NULL;
    }
    s->fd = -1;
    s->size = l.total;
    uint8_t *base;
    if (cfg->path) {
        if (strlen(cfg->path) + 6 > sizeof s->path) {
            FH_ERR("segment path too long: %s", cfg->path);
            goto fail;
        }
        strcpy(s->path, cfg->path);
        if (open_locked(cfg->path, &s->fd))
            goto fail;
        if (cfg->gid >= 0 && fchown(s->fd, (uid_t)-1, (gid_t)cfg->gid)) {
            FH_ERR("cannot give segment %s to group %d: %s", cfg->path, cfg->gid, strerror(errno));
            goto fail_unlink;
        }
        fchmod(s->fd, 0640);
        if (!(base = map_file(s->fd, l.total, cfg->path)))
            goto fail_unlink;
        /* the wake page of this segment alone (its directory's hash in the name unless it is /dev/shm): one
         * left by a dead writer of this very segment is replaced, never another directory's */
        char *wpath = s->wake_path;
        if (fh_shm_wake_path(cfg->path, wpath, sizeof s->wake_path)) {
            FH_ERR("segment path too long for its wake page: %s", cfg->path);
            munmap(base, l.total);
            goto fail_unlink;
        }
        unlink(wpath);
        int wfd = open(wpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
        if (wfd < 0 || (cfg->gid >= 0 && fchown(wfd, (uid_t)-1, (gid_t)cfg->gid)) || fchmod(wfd, 0660) ||
            ftruncate(wfd, 4096)) {
            FH_ERR("cannot create %s: %s", wpath, strerror(errno));
            if (wfd >= 0)
                close(wfd);
            munmap(base, l.total);
            goto fail_unlink;
        }
        void *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
        close(wfd);
        if (w == MAP_FAILED) {
            FH_ERR("cannot map %s: %s", wpath, strerror(errno));
            munmap(base, l.total);
            goto fail_unlink;
        }
        s->wake = w;
    } else {
        base = mmap(NULL, l.total + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) {
            FH_ERR("cannot map %zu bytes: %s; lower the capacities or free memory", l.total, strerror(errno));
            goto fail;
        }
        madvise(base, l.total, MADV_HUGEPAGE);
        if (fh_prefault(base, l.total + 4096)) {
            fh_err_append("lower the capacities or free memory");
            munmap(base, l.total + 4096);
            goto fail;
        }
        s->wake = (fh_shm_wake_t *)(base + l.total);
    }
    fh_shm_hdr_t *h = (fh_shm_hdr_t *)base;
    s->hdr = h;
    s->books = (fh_shm_book_t *)(base + l.books);
    s->lkey = (uint32_t *)(base + l.lkey);
    s->lagg = (fh_shm_agg_t *)(base + l.lagg);
    s->events = (fh_shm_event_t *)(base + l.events);
    s->stats = (fh_shm_stats_t *)(base + l.stats);
    s->lside = (fh_shm_lside_t *)(base + l.ladders);
    s->lslot = (fh_shm_agg_t *)(base + l.lslots);
    for (int sd = 0; sd < 2; sd++) /* the shared pair: neither 0 (bids' price 0) nor ~0 (asks') is in its window */
        s->lside[2 * cfg->ladder_books + sd].lo = 1u << 31;
    h->layout_version = FH_SHM_LAYOUT_VERSION;
    h->hdr_size = sizeof *h;
    h->size = l.total;
    h->books_off = l.books;
    h->lkey_off = l.lkey;
    h->lagg_off = l.lagg;
    h->events_off = l.events;
    h->stats_off = l.stats;
    h->ladder_off = l.ladders;
    h->lslot_off = l.lslots;
    h->ladder_bits = FH_SHM_LADDER_BITS;
    h->ladder_books = cfg->ladder_books;
    h->max_levels = cfg->max_levels;
    h->event_capacity = cfg->event_capacity;
    h->depth = cfg->depth;
    h->writer_pid = (uint32_t)getpid();
    h->start_ns = realtime_ns();
    h->tsc_hz = cfg->path ? tsc_hz() : 0;
    snprintf(h->name, sizeof h->name, "%s", cfg->name ? cfg->name : "");
    /* the book engine's representation (book.c, ITCH 5.0): a book per stock locate, unsigned 32-bit prices in
     * 1/10000 as 32-bit level keys. A venue with signed 64-bit prices or more instruments writes its own. */
    h->nbooks = FH_SHM_BOOKS;
    h->key_bits = 8 * sizeof *s->lkey;
    h->price_exp = FH_SEG_PRICE_EXP;
    __atomic_store_n(&h->heartbeat_ns, h->start_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&h->writer_state, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->standby, cfg->standby, __ATOMIC_RELAXED);
    __atomic_store_n(&h->magic, FH_SHM_MAGIC, __ATOMIC_RELEASE); /* last */
    return s;

fail_unlink:
    unlink(cfg->path);
fail:
    if (s->fd >= 0)
        close(s->fd);
    free(s);
    return NULL;
}

void fh_seg_set_standby(fh_seg_t *s, uint32_t state, uint64_t behind_msgs)
{
    fh_shm_hdr_t *h = s->hdr;
    if (__atomic_load_n(&h->behind_msgs, __ATOMIC_RELAXED) != behind_msgs)
        __atomic_store_n(&h->behind_msgs, behind_msgs, __ATOMIC_RELAXED);
    if (__atomic_load_n(&h->standby, __ATOMIC_RELAXED) != state)
        __atomic_store_n(&h->standby, state, __ATOMIC_RELEASE);
}

void fh_seg_close(fh_seg_t *s, int unlink_files)
{
    if (!s)
        return;
    __atomic_store_n(&s->hdr->writer_state, 2, __ATOMIC_RELEASE);
    fh_seg_heartbeat(s);
    if (s->fd >= 0) {
        /* wake any sleeper so that it notices the writer has stopped */
        __atomic_fetch_add(&s->wake->futex, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &s->wake->futex, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        munmap(s->wake, 4096);
        munmap(s->hdr, s->size);
        if (unlink_files) {
            unlink(s->path);
            unlink(s->wake_path);
        }
        close(s->fd); /* releases the lock */
    } else {
        munmap(s->hdr, s->size + 4096);
    }
    free(s);
}

void fh_seg_heartbeat(fh_seg_t *s)
{
    __atomic_store_n(&s->hdr->heartbeat_ns, realtime_ns(), __ATOMIC_RELEASE);
}

void fh_seg_wake(fh_seg_t *s)
{
    atomic_thread_fence(memory_order_seq_cst); /* our head store before our load of waiters */
    if (FH_LIKELY(!__atomic_load_n(&s->wake->waiters, __ATOMIC_RELAXED))) {
        s->idle_wakes = 0;
        return;
    }
    /* A reader killed while asleep leaves `waiters` raised for good. After 64 wakes in a row that woke no
     * one, wake at most once a millisecond: a real sleeper then waits up to 1 ms longer (it re-checks
     * every 100 ms anyway), and the writer makes at most 1,000 syscalls a second for the stale count. */
    if (s->idle_wakes >= 64) {
        uint64_t now = realtime_ns();
        if (now - s->last_wake_ns < 1000000)
            return;
        s->last_wake_ns = now;
    }
    __atomic_fetch_add(&s->wake->futex, 1, __ATOMIC_SEQ_CST);
    long woken = syscall(SYS_futex, &s->wake->futex, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    s->idle_wakes = woken > 0 ? 0 : s->idle_wakes + 1;
}

void fh_seg_publish_stats(fh_seg_t *s, const uint64_t *counters, uint32_t n, const uint64_t *type_counts)
{
    fh_shm_stats_t *st = s->stats;
    uint32_t seq = __atomic_load_n(&st->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&st->seq, seq + 1, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_release);
    if (n > FH_SHM_MAX_COUNTERS)
        n = FH_SHM_MAX_COUNTERS;
    st->count = n;
    memcpy(st->counter, counters, n * sizeof *counters);
    memcpy(st->type_count, type_counts, sizeof st->type_count);
    __atomic_store_n(&st->seq, seq + 2, __ATOMIC_RELEASE);
}

void fh_seg_publish_dataplane(fh_seg_t *s, const fh_shm_dp_stats_t *dp)
{
    fh_shm_stats_t *st = s->stats;
    uint32_t seq = __atomic_load_n(&st->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&st->seq, seq + 1, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_release);
    memcpy(&st->dp, dp, sizeof st->dp);
    st->dp.present = 1;
    if (st->dp.ndrops > FH_SHM_DP_MAX_DROPS)
        st->dp.ndrops = FH_SHM_DP_MAX_DROPS;
    if (st->dp.nmold > FH_SHM_DP_MAX_MOLD)
        st->dp.nmold = FH_SHM_DP_MAX_MOLD;
    if (st->dp.nlines > FH_SHM_DP_MAX_LINES)
        st->dp.nlines = FH_SHM_DP_MAX_LINES;
    __atomic_store_n(&st->seq, seq + 2, __ATOMIC_RELEASE);
}
