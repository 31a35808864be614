/* fh-bench-wake [--wakes N] [--mode sleep|spin|both] [--writer-cpu C] [--reader-cpu C]: the latency from
 * the writer publishing an event to a reader blocked in fh_shm_wait returning, in ns (median, p99, p99.9,
 * max over N wake-ups, default 2000).
 *
 * The writer (this process) is the real one: a book engine on a shared segment (fh/book.h, fh/seg.h)
 * applying one message per fh_engine_apply_blocks call, as the data plane does per datagram, so the event
 * goes through event_begin / event_end and the engine's own fh_seg_wake. Each message (an add, then a
 * delete, of the only order of one book) changes the best bid: one BBO event. Between messages the writer
 * pauses for a random time. The reader is a forked process that joins the segment with fh/shm.h,
 * waits in fh_shm_wait, and on return reads the TSC and the event's pub_tsc (stamped by the engine at the
 * start of that fh_engine_apply_blocks call): the difference is the figure. It therefore includes
 * applying the message (tens of ns), the wake-up and the return.
 *
 *   sleep  pauses of 0.3 to 1.3 ms, far beyond fh_shm_wait's spin: the reader sleeps on the futex and the
 *          writer's fh_seg_wake makes the FUTEX_WAKE syscall
 *   spin   pauses shorter than half of fh_shm_wait's spin (measured here): the reader is still spinning
 *
 * Writer and reader are pinned to different CPUs (default 0 and 1). Output: one JSON line per mode. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "fh/book.h"
#include "fh/itch.h"
#include "fh/seg.h"
#include "bench_util.h"
#include "../tests/shm_join.h"

static const char *prog = "fh-bench-wake";

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng(void) { return shm_xorshift64(&rng_state); }

/* How long fh_shm_wait spins before it sleeps: its 2000 rounds of a head load and a pause, in TSC ticks. */
static uint64_t spin_ticks(const fh_seg_t *seg)
{
    uint64_t best = UINT64_MAX;
    for (int rep = 0; rep < 20; rep++) {
        uint64_t t0 = __builtin_ia32_rdtsc(), sink = 0;
        for (int i = 0; i < 2000; i++) {
            sink += __atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE);
            __builtin_ia32_pause();
        }
        uint64_t t = __builtin_ia32_rdtsc() - t0 + (sink & 0);
        best = t < best ? t : best;
    }
    return best;
}

/* The reader: wait, stamp, read the newest event, record the latency; until n samples or the writer stops. */
static int reader(const char *path, int cpu, uint64_t n, int ready_fd)
{
    if (bench_pin(prog, cpu))
        return 2;
    fh_shm_reader_t r;
    if (shm_join(&r, "fh-bench-wake: reader", path))
        return 2;
    if (!r.wake) {
        char wpath[4096 + 32];
        if (fh_shm_wake_path(path, wpath, sizeof wpath))
            snprintf(wpath, sizeof wpath, "the wake page of %s", path);
        fprintf(stderr, "%s: reader: %s not writable: fh_shm_wait polls\n", prog, wpath);
    }
    uint64_t *lat = calloc(n, sizeof *lat), m = 0, multi = 0, seen = fh_shm_head(&r);
    if (!lat)
        return 2;
    if (write(ready_fd, "r", 1) != 1)
        return 2;
    close(ready_fd);
    while (m < n) {
        uint64_t head = fh_shm_wait(&r, seen, 2000000000u);
        unsigned aux;
        uint64_t t1 = __builtin_ia32_rdtscp(&aux);
        if (head <= seen) {
            if (atomic_load(&r.hdr->writer_state) == 2)
                break;
            continue;
        }
        fh_shm_event_t ev;
        uint64_t next = head;
        if (fh_shm_event_next(&r, &next, &ev) != FH_SHM_EV_OK) {
            fprintf(stderr, "%s: reader: event %" PRIu64 " unreadable\n", prog, head);
            return 1;
        }
        multi += head != seen + 1;
        seen = head;
        lat[m++] = t1 > ev.pub_tsc ? t1 - ev.pub_tsc : 0;
    }
    /* results to the writer through stdout of this process: n ticks, binary, after a count */
    fwrite(&m, sizeof m, 1, stdout);
    fwrite(&multi, sizeof multi, 1, stdout);
    fwrite(lat, sizeof *lat, m, stdout);
    fflush(stdout);
    fh_shm_leave(&r);
    return 0;
}

static void put_msg(uint8_t *blk, size_t *len, int add, uint64_t ref, uint64_t ts)
{
    uint8_t *m = blk + 2;
    memset(m, 0, 36);
    fh_put_be16(m + 1, 1);   /* locate */
    fh_put_be48(m + 5, ts);  /* timestamp */
    fh_put_be64(m + FH_ITCH_OFF_REF, ref);
    if (add) {
        m[0] = 'A';
        m[FH_ITCH_OFF_A_SIDE] = 'B';
        fh_put_be32(m + FH_ITCH_OFF_A_SHARES, 100);
        memcpy(m + FH_ITCH_OFF_A_STOCK, "WAKE    ", 8);
        fh_put_be32(m + FH_ITCH_OFF_A_PRICE, 1000000);
    } else {
        m[0] = 'D';
    }
    size_t n = fh_itch_len[m[0]];
    fh_put_be16(blk, (uint16_t)n);
    *len = n + 2;
}

static void busy_ticks(uint64_t ticks)
{
    uint64_t t0 = __builtin_ia32_rdtsc();
    while (__builtin_ia32_rdtsc() - t0 < ticks)
        __builtin_ia32_pause();
}

static int run(const char *mode, uint64_t n, int wcpu, int rcpu)
{
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fh-bench-wake-%d", (int)getpid());
    fh_seg_cfg_t sc = { path, "bench-wake", 1024, 1024, 10, -1, 0, 0 };
    fh_seg_t *seg = fh_seg_create(&sc);
    if (!seg) {
        fprintf(stderr, "%s: %s\n", prog, fh_errmsg());
        return 2;
    }
    fh_engine_cfg_t cfg = { 16, 1024, 1024 };
    fh_engine_t *e = fh_engine_create_on(&cfg, seg);
    if (!e || bench_pin(prog, wcpu)) {
        fprintf(stderr, "%s: %s\n", prog, fh_errmsg());
        fh_seg_close(seg, 1);
        return 2;
    }
    double hz = (double)seg->hdr->tsc_hz, ns_per_tick = hz > 0 ? 1e9 / hz : 0;
    if (!ns_per_tick) {
        fprintf(stderr, "%s: no TSC rate\n", prog);
        return 2;
    }
    uint64_t spin = spin_ticks(seg);
    int spin_mode = strcmp(mode, "spin") == 0;
    int ready[2], out[2];
    if (pipe(ready) || pipe(out)) {
        perror("pipe");
        return 2;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(out[0]);
        dup2(out[1], 1);
        _exit(reader(path, rcpu, n, ready[1]));
    }
    close(ready[1]);
    close(out[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) {
        fprintf(stderr, "%s: the reader did not start\n", prog);
        return 2;
    }
    close(ready[0]);
    uint8_t blk[64];
    size_t len;
    uint64_t ts = 34200000000000ull; /* 09:30 */
    for (uint64_t i = 0; i < n; i++) {
        if (spin_mode) {
            busy_ticks(rng() % (spin / 2));
        } else {
            uint64_t us = 300 + rng() % 1000;
            struct timespec nap = { 0, (long)(us * 1000) };
            nanosleep(&nap, NULL);
        }
        put_msg(blk, &len, !(i & 1), 1 + i / 2, ts + i);
        fh_engine_apply_blocks(e, blk, len);
    }
    struct timespec nap = { 0, 20000000 };
    nanosleep(&nap, NULL);
    fh_engine_destroy(e);
    fh_seg_close(seg, 1); /* writer_state 2, wakes the reader if it still waits */
    uint64_t m = 0, multi = 0;
    FILE *f = fdopen(out[0], "rb");
    uint64_t *lat = calloc(n, sizeof *lat);
    int ok = f && lat && fread(&m, sizeof m, 1, f) == 1 && fread(&multi, sizeof multi, 1, f) == 1 && m <= n &&
             fread(lat, sizeof *lat, m, f) == m;
    int st = 0;
    waitpid(pid, &st, 0);
    if (!ok || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || m < 10) {
        fprintf(stderr, "%s: the reader failed (status %d, %" PRIu64 " samples)\n", prog, st, m);
        return 1;
    }
    qsort(lat, m, sizeof *lat, cmp_u64);
    printf("{\"mode\": \"%s\", \"wakes\": %" PRIu64 ", \"missed\": %" PRIu64 ", \"several_per_wake\": %" PRIu64
           ", \"min_ns\": %.0f, \"median_ns\": %.0f, \"p99_ns\": %.0f, \"p999_ns\": %.0f, \"max_ns\": %.0f"
           ", \"spin_window_ns\": %.0f, \"writer_cpu\": %d, \"reader_cpu\": %d}\n",
           mode, m, n - m, multi, (double)lat[0] * ns_per_tick, (double)lat[m / 2] * ns_per_tick,
           (double)lat[m * 99 / 100] * ns_per_tick, (double)lat[m * 999 / 1000] * ns_per_tick,
           (double)lat[m - 1] * ns_per_tick, (double)spin * ns_per_tick, wcpu, rcpu);
    fflush(stdout);
    free(lat);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = 2000;
    const char *mode = "both";
    int wcpu = 0, rcpu = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wakes") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = argv[++i];
        else if (strcmp(argv[i], "--writer-cpu") == 0 && i + 1 < argc)
            wcpu = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reader-cpu") == 0 && i + 1 < argc)
            rcpu = atoi(argv[++i]);
        else
            n = 0, i = argc;
    }
    if (n < 10 || n > 10000000 ||
        (strcmp(mode, "sleep") && strcmp(mode, "spin") && strcmp(mode, "both"))) {
        fprintf(stderr, "usage: %s [--wakes N (10..1e7)] [--mode sleep|spin|both] [--writer-cpu C] [--reader-cpu C]\n",
                prog);
        return 2;
    }
    int rc = 0;
    if (strcmp(mode, "spin"))
        rc |= run("sleep", n, wcpu, rcpu);
    if (strcmp(mode, "sleep"))
        rc |= run("spin", n, wcpu, rcpu);
    return rc;
}
