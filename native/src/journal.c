/* The writer's side of the applied-message journal: create, lock, lay out, marks (fh/journal_writer.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fh/journal_writer.h"

static size_t data_off(void) { return (sizeof(fh_journal_hdr_t) + 4095) & ~(size_t)4095; }

size_t fh_journal_footprint(uint64_t capacity)
{
    if (capacity < FH_JOURNAL_MIN_CAPACITY || capacity > FH_JOURNAL_MAX_CAPACITY || (capacity & (capacity - 1))) {
        FH_ERR("journal capacity must be a power of two from %llu (256 KiB) to 2^40 bytes, not %llu",
               (unsigned long long)FH_JOURNAL_MIN_CAPACITY, (unsigned long long)capacity);
        return 0;
    }
    return data_off() + (size_t)capacity;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Open path for a new writer: refuse a live writer's file, replace a stale one. */
static int open_locked(const char *path, int *fd_out)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            int pid = 0;
            fh_journal_hdr_t h;
            if (pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && h.magic == FH_JOURNAL_MAGIC)
                pid = (int)h.writer_pid;
            close(fd);
            return FH_ERR("journal %s is held by another writer (pid %d): stop that instance (kill %d) or give "
                          "this one another name", path, pid, pid);
        }
        unlink(path); /* stale: its writer is gone; followers still mapping it see a dead writer */
        close(fd);
    }
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return FH_ERR("cannot create journal %s: %s%s", path, strerror(errno),
                      errno == EEXIST ? " (another writer is starting on it)"
                      : errno == ENOENT ? " (the directory does not exist: use /dev/shm)" : "");
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        close(fd);
        return FH_ERR("journal %s was locked by another writer as it was created", path);
    }
    *fd_out = fd;
    return 0;
}

fh_journal_t *fh_journal_create(const fh_journal_cfg_t *cfg)
{
    size_t size = fh_journal_footprint(cfg->capacity);
    if (!size)
        return NULL;
    fh_journal_t *j = calloc(1, sizeof *j);
    if (!j) {
        FH_ERR("out of memory");
        return NULL;
    }
    j->fd = -1;
    void *mem = MAP_FAILED;
    if (cfg->path) {
        if (strlen(cfg->path) >= sizeof j->path) {
            FH_ERR("journal path too long (%zu bytes)", strlen(cfg->path));
            goto fail;
        }
        snprintf(j->path, sizeof j->path, "%s", cfg->path);
        if (open_locked(cfg->path, &j->fd))
            goto fail;
        if (cfg->gid >= 0 && fchown(j->fd, (uid_t)-1, (gid_t)cfg->gid)) {
            FH_ERR("cannot give journal %s to group %d: %s", cfg->path, cfg->gid, strerror(errno));
            goto fail_file;
        }
        if (ftruncate(j->fd, (off_t)size)) {
            FH_ERR("cannot size journal %s to %zu bytes: %s (is /dev/shm large enough? lower the capacity)",
                   cfg->path, size, strerror(errno));
            goto fail_file;
        }
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, j->fd, 0);
    } else {
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    }
    if (mem == MAP_FAILED) {
        FH_ERR("cannot map a journal of %zu bytes%s%s: %s", size, cfg->path ? " at " : "", cfg->path ? cfg->path : "",
               strerror(errno));
        goto fail_file;
    }
    j->size = size;
    j->hdr = (fh_journal_hdr_t *)mem;
    j->data = (uint8_t *)mem + data_off();
    j->capacity = cfg->capacity;
    j->mask = cfg->capacity - 1;
    fh_journal_hdr_t *h = j->hdr;
    memset(h, 0, sizeof *h);
    h->layout_version = FH_JOURNAL_LAYOUT_VERSION;
    h->hdr_size = sizeof *h;
    h->size = size;
    h->data_off = data_off();
    h->capacity = cfg->capacity;
    h->writer_pid = (uint32_t)getpid();
    h->start_ns = realtime_ns();
    snprintf(h->name, sizeof h->name, "%s", cfg->name ? cfg->name : "");
    atomic_store_explicit(&h->heartbeat_ns, h->start_ns, memory_order_relaxed);
    atomic_store_explicit(&h->writer_state, 1, memory_order_relaxed);
    atomic_store_explicit((_Atomic uint64_t *)&h->magic, FH_JOURNAL_MAGIC, memory_order_release);
    return j;
fail_file:
    if (j->fd >= 0) {
        unlink(cfg->path);
        close(j->fd);
    }
fail:
    free(j);
    return NULL;
}

void fh_journal_close(fh_journal_t *j, int unlink_file)
{
    if (!j)
        return;
    atomic_store_explicit(&j->hdr->records, j->records, memory_order_relaxed);
    atomic_store_explicit(&j->hdr->writer_state, 2, memory_order_release);
    munmap(j->hdr, j->size);
    if (j->fd >= 0) {
        if (unlink_file)
            unlink(j->path);
        close(j->fd); /* releases the lock */
    }
    free(j);
}

void fh_journal_append_mark(fh_journal_t *j, int kind, const char session[FH_JOURNAL_SESSION_LEN], uint64_t seq,
                            uint64_t arg)
{
    if ((kind == FH_JR_HEARTBEAT || kind == FH_JR_END) && j->last_kind == kind && j->last_seq == seq)
        return;
    uint64_t pos;
    fh_journal_rec_t *r = (fh_journal_rec_t *)fh_journal__reserve(j, sizeof *r, &pos);
    memset(r, 0, sizeof *r);
    r->pos = pos;
    r->size = sizeof *r;
    r->kind = (uint8_t)kind;
    r->seq = seq;
    r->arg = arg;
    memcpy(r->session, session, FH_JOURNAL_SESSION_LEN);
    j->last_kind = (uint8_t)kind;
    j->last_seq = seq;
    fh_journal__publish(j, pos + sizeof *r);
    atomic_store_explicit(&j->hdr->records, j->records, memory_order_relaxed);
}

void fh_journal_heartbeat(fh_journal_t *j)
{
    atomic_store_explicit(&j->hdr->heartbeat_ns, realtime_ns(), memory_order_relaxed);
    atomic_store_explicit(&j->hdr->records, j->records, memory_order_relaxed);
}
