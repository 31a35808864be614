/* test_shm_wake: a segment's wake page (fh_shm_wake_path) is its own. In /dev/shm it keeps the name
 * /dev/shm/BASENAME.wake; anywhere else its name carries the FNV-1a 64 of the resolved directory, so that two
 * segments of one basename in two directories (two hugetlbfs mounts, say) each have a page: creating one does not
 * unlink or replace the other's, a reader of each sleeping in fh_shm_wait is woken by its own writer at once (not
 * by its 100 ms re-check), and closing one leaves the other's page. Exit 0 pass, 1 fail (liburing style). */
#include "fh/seg.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char *wake_of(const char *path, char *out, size_t cap)
{
    if (fh_shm_wake_path(path, out, cap)) {
        snprintf(out, cap, "(does not fit)");
        CHECK(0, "fh_shm_wake_path(%s) does not fit in %zu", path, cap);
    }
    return out;
}

/* The name by the rule, computed here the long way: dir is already resolved. */
static void expected(const char *dir, const char *base, char *out, size_t cap)
{
    if (!strcmp(dir, "/dev/shm"))
        snprintf(out, cap, "/dev/shm/%s.wake", base);
    else
        snprintf(out, cap, "/dev/shm/%s.%016" PRIx64 ".wake", base, fh_shm_fnv1a64(dir, strlen(dir)));
}

static void same(const char *path, const char *want)
{
    char got[8192];
    wake_of(path, got, sizeof got);
    CHECK(!strcmp(got, want), "wake page of %.200s (%zu bytes): %s, want %s", path, strlen(path), got, want);
}

static void test_names(const char *tmp)
{
    /* FNV-1a 64 test vectors (the reference implementation's) */
    CHECK(fh_shm_fnv1a64("", 0) == 0xcbf29ce484222325ull, "fnv1a64('')");
    CHECK(fh_shm_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull, "fnv1a64('a')");
    CHECK(fh_shm_fnv1a64("foobar", 6) == 0x85944171f73967e8ull, "fnv1a64('foobar')");

    char want[8192], a[8192], b[8192];
    same("/dev/shm/fh-x", "/dev/shm/fh-x.wake");
    same("/dev/shm//fh-x", "/dev/shm/fh-x.wake");
    same("/dev/./shm/fh-x", "/dev/shm/fh-x.wake");
    /* a directory that cannot be resolved: hashed as given, trailing '/'s dropped */
    snprintf(want, sizeof want, "/dev/shm/fh-x.%016" PRIx64 ".wake", fh_shm_fnv1a64("/nonexistent-fh", 15));
    same("/nonexistent-fh/fh-x", want);
    same("/nonexistent-fh//fh-x", want);
    expected("/", "fh-x", want, sizeof want);
    same("/fh-x", want);
    same("//fh-x", want);

    /* a tmp dir, through a symlink to it, and relative to it: one name, its realpath's */
    char real[PATH_MAX], link[PATH_MAX], shmlink[PATH_MAX], p[PATH_MAX + 16];
    CHECK(realpath(tmp, real) != NULL, "realpath %s", tmp);
    expected(real, "fh-x", want, sizeof want);
    CHECK(strcmp(want, "/dev/shm/fh-x.wake") != 0, "a tmp dir has a name of its own");
    snprintf(p, sizeof p, "%s/fh-x", tmp);
    same(p, want);
    snprintf(link, sizeof link, "%s.link", tmp);
    CHECK(symlink(real, link) == 0, "symlink %s", link);
    snprintf(p, sizeof p, "%s/fh-x", link);
    same(p, want);
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    CHECK(chdir(real) == 0, "chdir %s", real);
    same("fh-x", want);
    same("./fh-x", want);
    CHECK(chdir(cwd) == 0, "chdir back");
    /* a symlink to /dev/shm is /dev/shm */
    snprintf(shmlink, sizeof shmlink, "%s.shm", tmp);
    CHECK(symlink("/dev/shm", shmlink) == 0, "symlink %s", shmlink);
    snprintf(p, sizeof p, "%s/fh-x", shmlink);
    same(p, "/dev/shm/fh-x.wake");
    unlink(link);
    unlink(shmlink);

    /* the cap: the name and its NUL fit exactly, or -1 (out untouched beyond cap) */
    snprintf(p, sizeof p, "%s/fh-x", tmp);
    size_t n = strlen(want) + 1;
    memset(a, 'Z', sizeof a);
    CHECK(fh_shm_wake_path(p, a, n) == 0 && !strcmp(a, want), "cap %zu: %s", n, a);
    memset(b, 'Z', sizeof b);
    CHECK(fh_shm_wake_path(p, b, n - 1) == -1 && b[0] == 'Z', "cap %zu must not fit", n - 1);
    CHECK(fh_shm_wake_path("/dev/shm/fh-x", b, sizeof "/dev/shm/fh-x.wake") == 0, "exact cap in /dev/shm");
    CHECK(fh_shm_wake_path("/dev/shm/fh-x", b, sizeof "/dev/shm/fh-x.wake" - 1) == -1, "one short in /dev/shm");

    /* a long path near PATH_MAX: a deep directory of 200-byte names, 4,000 bytes in all */
    char deep[PATH_MAX];
    snprintf(deep, sizeof deep, "%s", real);
    char comp[201];
    memset(comp, 'd', 200);
    comp[200] = '\0';
    while (strlen(deep) + 201 < 4000) {
        size_t l = strlen(deep);
        snprintf(deep + l, sizeof deep - l, "/%s", comp);
        CHECK(mkdir(deep, 0700) == 0, "mkdir %zu bytes", strlen(deep));
    }
    expected(deep, "fh-x", want, sizeof want);
    snprintf(p, sizeof p, "%s/fh-x", deep);
    same(p, want);
    for (size_t l = strlen(deep); l > strlen(real); l = strlen(deep)) {
        CHECK(rmdir(deep) == 0, "rmdir");
        *strrchr(deep, '/') = '\0';
    }
}

/* ---- two segments of one basename ---------------------------------------------------------------------- */

static uint64_t mono_ns(void) { return fh_shm_mono_ns(); }

typedef struct sleeper {
    fh_shm_reader_t r;
    uint64_t seen, head, woke_ns;
} sleeper_t;

static void *sleep_on(void *arg)
{
    sleeper_t *w = (sleeper_t *)arg;
    w->head = fh_shm_wait(&w->r, w->seen, 2000000000ull);
    w->woke_ns = mono_ns();
    return NULL;
}

static uint64_t inode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : (uint64_t)st.st_ino;
}

/* A reader of s's segment asleep in fh_shm_wait, then one event published by s: it must be woken by s's wake,
 * well under the 100 ms re-check. */
static void check_wakes(fh_seg_t *s, const char *what)
{
    sleeper_t w;
    CHECK(fh_shm_join(&w.r, s->path) == 0, "%s: join", what);
    CHECK(w.r.wake != NULL, "%s: the reader has no wake page", what);
    if (!w.r.wake)
        return;
    w.seen = fh_shm_head(&w.r);
    w.woke_ns = 0;
    pthread_t th;
    pthread_create(&th, NULL, sleep_on, &w);
    uint64_t t0 = mono_ns();
    while (!__atomic_load_n(&w.r.wake->waiters, __ATOMIC_SEQ_CST) && mono_ns() - t0 < 1000000000ull)
        usleep(100);
    CHECK(__atomic_load_n(&w.r.wake->waiters, __ATOMIC_SEQ_CST) == 1, "%s: the reader did not go to sleep", what);
    /* the page the reader sleeps on is the one its writer wakes */
    CHECK(__atomic_load_n(&s->wake->waiters, __ATOMIC_SEQ_CST) == 1, "%s: the reader sleeps on another page", what);
    uint64_t pub = mono_ns();
    __atomic_store_n(&s->hdr->head, w.seen + 1, __ATOMIC_RELEASE);
    fh_seg_wake(s);
    pthread_join(th, NULL);
    double ms = (double)(w.woke_ns - pub) / 1e6;
    printf("%s: woken %.3f ms after the publish\n", what, ms);
    CHECK(w.head == w.seen + 1, "%s: head %" PRIu64 ", want %" PRIu64, what, w.head, w.seen + 1);
    CHECK(ms < 50.0, "%s: woken %.1f ms after the publish (the 100 ms re-check, not its writer's wake)", what, ms);
    fh_shm_leave(&w.r);
}

static void test_two_directories(const char *tmp)
{
    char d1[PATH_MAX], d2[PATH_MAX], p1[PATH_MAX + 64], p2[PATH_MAX + 64], w1[8192], w2[8192], base[64];
    snprintf(d1, sizeof d1, "%s/mnt1", tmp);
    snprintf(d2, sizeof d2, "%s/mnt2", tmp);
    CHECK(mkdir(d1, 0700) == 0 && mkdir(d2, 0700) == 0, "mkdir");
    snprintf(base, sizeof base, "fh-wake-test-%d", (int)getpid());
    snprintf(p1, sizeof p1, "%s/%s", d1, base);
    snprintf(p2, sizeof p2, "%s/%s", d2, base);
    wake_of(p1, w1, sizeof w1);
    wake_of(p2, w2, sizeof w2);
    CHECK(strcmp(w1, w2) != 0, "one basename in two directories: one wake page %s", w1);

    fh_seg_cfg_t c1 = { .path = p1, .name = "one", .max_levels = 64, .event_capacity = 64, .depth = 10, .gid = -1 };
    fh_seg_cfg_t c2 = c1;
    c2.path = p2;
    c2.name = "two";
    fh_seg_t *s1 = fh_seg_create(&c1);
    CHECK(s1 != NULL, "create %s: %s", p1, fh_errmsg());
    if (!s1)
        goto out;
    CHECK(!strcmp(s1->wake_path, w1), "writer 1 made %s, fh_shm_wake_path says %s", s1->wake_path, w1);
    uint64_t ino1 = inode_of(w1);
    CHECK(ino1 != 0, "no wake page %s", w1);
    fh_seg_t *s2 = fh_seg_create(&c2);
    CHECK(s2 != NULL, "create %s: %s", p2, fh_errmsg());
    if (!s2) {
        fh_seg_close(s1, 1);
        goto out;
    }
    CHECK(inode_of(w1) == ino1, "the second writer replaced the first's wake page %s", w1);
    CHECK(inode_of(w2) != 0 && inode_of(w2) != ino1, "the second writer's page %s", w2);

    /* readers that join now, after both writers: each is woken by its own writer */
    check_wakes(s1, "segment 1");
    check_wakes(s2, "segment 2");

    fh_seg_close(s2, 1);
    CHECK(inode_of(w2) == 0, "closing segment 2 left its wake page %s", w2);
    CHECK(inode_of(w1) == ino1, "closing segment 2 removed segment 1's wake page %s", w1);
    check_wakes(s1, "segment 1 after segment 2 closed");
    fh_seg_close(s1, 1);
    CHECK(inode_of(w1) == 0 && inode_of(p1) == 0, "closing segment 1 left %s or %s", w1, p1);
out:
    unlink(w1); /* after a failure: nothing of ours stays in /dev/shm */
    unlink(w2);
    unlink(p1);
    unlink(p2);
    rmdir(d1);
    rmdir(d2);
}

int main(void)
{
    char tmp[] = "/tmp/fh-test-wake-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_names(tmp);
    test_two_directories(tmp);
    rmdir(tmp);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    return failures != 0;
}
