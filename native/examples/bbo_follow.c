/* fh-bbo-follow SEGMENT [SYMBOL...]: follow the best bid and offer of an fh instance.
 *
 * An example consumer of the shared-memory segment: it includes fh/shm.h and nothing else of fh. It joins
 * the segment read-only, prints the current BBO of the followed symbols (all symbols if none are named),
 * then follows the event ring from its head, blocking in fh_shm_wait when there is nothing new, and prints
 * one line per BBO change:
 *
 *   09:30:00.000001234 AAPL              300 x 187.5100 - 187.5300 x 200              pub+850ns
 *
 * (exchange time, symbol, bid size x bid - ask x ask size, and how long ago the writer published the
 * event when the segment records the TSC rate; a missing side prints as "-"). When it falls so far behind
 * that the ring has overwritten events it has not read, it says how many it lost and prints the current
 * BBO of the followed symbols from the books, which are always current, then goes on with the events that
 * remain. It exits 0 on SIGINT / SIGTERM or when the writer stops cleanly, 1 if the writer dies, 2 if it
 * cannot join.
 *
 * SEGMENT is a path (/dev/shm/fh-NAME, or a hugetlbfs file) or an instance name (NAME: /dev/shm/fh-NAME). */
#include <fh/shm.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static const char *prog = "fh-bbo-follow";
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* ---- which books to follow --------------------------------------------------------------------------- */

#define FOLLOW_UNKNOWN 0 /* not looked at yet (or no book when we looked) */
#define FOLLOW_YES 1
#define FOLLOW_NO 2

typedef struct follow {
    char **symbols; /* NULL: all */
    int nsymbols;
    uint8_t *state; /* per book index, r->nbooks of them */
    int price_exp;  /* hdr->price_exp: a price p is p * 10^price_exp */
} follow_t;

static int symbol_eq(const fh_shm_book_t *b, const char *sym)
{
    size_t n = strlen(sym);
    return n == b->symbol_len && memcmp(b->symbol, sym, n) == 0;
}

/* Classify a locate from its book (a consistent copy); FOLLOW_UNKNOWN while it has no book. */
static int follows(const fh_shm_reader_t *r, follow_t *f, uint32_t loc)
{
    if (f->state[loc] != FOLLOW_UNKNOWN)
        return f->state[loc] == FOLLOW_YES;
    if (!f->symbols) {
        f->state[loc] = FOLLOW_YES;
        return 1;
    }
    fh_shm_snapshot_t s;
    if (fh_shm_snapshot(r, loc, 0, &s) < 0)
        return 0;
    f->state[loc] = FOLLOW_NO;
    for (int i = 0; i < f->nsymbols; i++)
        if (symbol_eq(&s.book, f->symbols[i]))
            f->state[loc] = FOLLOW_YES;
    return f->state[loc] == FOLLOW_YES;
}

/* ---- printing ---------------------------------------------------------------------------------------- */

static uint64_t rdtsc(void) { return __builtin_ia32_rdtsc(); }

static void print_time(uint64_t ns)
{
    uint64_t s = ns / 1000000000u;
    printf("%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%09" PRIu64, s / 3600, s / 60 % 60, s % 60, ns % 1000000000u);
}

/* A price in units of 10^exp as a decimal (exp -4: 1850100 -> 185.0100); "-" when the side is empty. */
static const char *price_text(char *buf, size_t cap, int64_t p, int exp, uint64_t shares)
{
    if (!shares) {
        snprintf(buf, cap, "-");
        return buf;
    }
    if (exp >= 0 || exp < -18) {
        snprintf(buf, cap, "%" PRId64 "e%d", p, exp);
        return buf;
    }
    uint64_t scale = 1, mag = p < 0 ? -(uint64_t)p : (uint64_t)p;
    for (int i = 0; i < -exp; i++)
        scale *= 10;
    snprintf(buf, cap, "%s%" PRIu64 ".%0*" PRIu64, p < 0 ? "-" : "", mag / scale, -exp, mag % scale);
    return buf;
}

/* "TIME SYMBOL   bidsize x bid - ask x asksize", the two sides aligned on the " - " between them. */
static void print_bbo(const follow_t *f, uint64_t itch_ts, const char *sym, size_t symlen, uint64_t bsz, int64_t bid,
                      int64_t ask, uint64_t asz)
{
    char p[48], bidside[80], askside[80];
    snprintf(bidside, sizeof bidside, "%" PRIu64 " x %s", bsz, price_text(p, sizeof p, bid, f->price_exp, bsz));
    snprintf(askside, sizeof askside, "%s x %" PRIu64, price_text(p, sizeof p, ask, f->price_exp, asz), asz);
    print_time(itch_ts);
    printf(" %-8.*s %22s - %-22s", (int)symlen, sym, bidside, askside);
}

/* The current BBO of every followed book with an instrument, from the books themselves. */
static void print_books(const fh_shm_reader_t *r, follow_t *f, const char *why)
{
    fh_shm_snapshot_t s;
    uint32_t n = 0;
    for (uint32_t loc = 0; loc < r->nbooks; loc++) {
        if (r->books[loc].status == FH_BOOK_EMPTY || !follows(r, f, loc))
            continue;
        if (fh_shm_snapshot(r, loc, 1, &s) < 0)
            continue;
        n++;
        if (!f->symbols)
            continue; /* following everything: a count, not thousands of lines */
        print_bbo(f, s.book.itch_ts, s.book.symbol, s.book.symbol_len, s.nbids ? s.bids[0].shares : 0,
                  s.nbids ? s.bids[0].price : 0, s.nasks ? s.asks[0].price : 0, s.nasks ? s.asks[0].shares : 0);
        printf(" %s%s\n", why, s.book.status == FH_BOOK_STALE ? " STALE" : "");
    }
    if (!f->symbols)
        printf("%s: %u books\n", why, n);
    else if (!n)
        printf("%s: none of the symbols has a book yet\n", why);
}

/* ---- joining ----------------------------------------------------------------------------------------- */

/* Say in one line why path cannot be joined. */
static void join_error(const char *path, int err)
{
    if (err == -ENOENT) {
        fprintf(stderr, "%s: %s: no such segment: is the writer running? (fh publish, fh run)\n", prog, path);
    } else if (err == -EACCES) {
        fprintf(stderr, "%s: %s: permission denied: join the segment's group, or run as its owner\n", prog, path);
    } else if (err == -EPROTO) {
        fh_shm_hdr_t h;
        memset(&h, 0, sizeof h);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? pread(fd, &h, sizeof h, 0) : -1;
        if (fd >= 0)
            close(fd);
        if (n == (ssize_t)sizeof h && h.magic == FH_SHM_MAGIC && h.layout_version != FH_SHM_LAYOUT_VERSION)
            fprintf(stderr, "%s: %s: segment layout version %u, this program reads version %u: rebuild it with the "
                            "fh/shm.h of the running fh\n", prog, path, h.layout_version, FH_SHM_LAYOUT_VERSION);
        else if (n == (ssize_t)sizeof h && h.magic == 0)
            fprintf(stderr, "%s: %s: the segment is not ready (its writer is starting); try again\n", prog, path);
        else
            fprintf(stderr, "%s: %s: not an fh segment\n", prog, path);
    } else {
        fprintf(stderr, "%s: %s: cannot join: %s\n", prog, path, strerror(-err));
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s SEGMENT [SYMBOL...]   (SEGMENT: a path, or NAME for /dev/shm/fh-NAME)\n", prog);
        return 2;
    }
    char path[4096];
    if (strchr(argv[1], '/'))
        snprintf(path, sizeof path, "%s", argv[1]);
    else
        snprintf(path, sizeof path, "/dev/shm/fh-%s", argv[1]);
    static follow_t f;
    if (argc > 2) {
        f.symbols = argv + 2;
        f.nsymbols = argc - 2;
        for (int i = 0; i < f.nsymbols; i++)
            if (strlen(f.symbols[i]) < 1 || strlen(f.symbols[i]) > 8) {
                fprintf(stderr, "%s: %s: a symbol is 1 to 8 characters\n", prog, f.symbols[i]);
                return 2;
            }
    }

    fh_shm_reader_t r = { 0 }; /* fh_shm_join leaves it untouched on failure */
    int rc = fh_shm_join(&r, path);
    if (rc) {
        join_error(path, rc);
        return 2;
    }
    f.price_exp = r.hdr->price_exp;
    if (!(f.state = calloc(r.nbooks, 1))) {
        fprintf(stderr, "%s: no memory for %u books\n", prog, r.nbooks);
        fh_shm_leave(&r);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* stdout writes must not fail with EINTR; waits are 200 ms at most anyway */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    const fh_shm_hdr_t *h = r.hdr;
    double ns_per_tsc = h->tsc_hz ? 1e9 / (double)h->tsc_hz : 0;
    printf("%s: joined %s (instance \"%.32s\", writer pid %u, %u-event ring)\n", prog, path, h->name, h->writer_pid,
           h->event_capacity);
    uint64_t behind;
    uint32_t sb = fh_shm_standby_state(&r, &behind); /* a standby's books may be its primary's of a while ago */
    if (sb == FH_SHM_STANDBY_BEHIND)
        printf("%s: a standby catching up: its books are %" PRIu64 " messages behind its own lines\n", prog, behind);
    else if (sb == FH_SHM_STANDBY_NO_LINES)
        printf("%s: a standby whose lines have delivered nothing yet: its books may not be current\n", prog);
    uint64_t next = fh_shm_head(&r) + 1;
    print_books(&r, &f, "current");
    fflush(stdout);

    uint64_t events = 0, lost = 0, idle_since = 0;
    int status = 0;
    fh_shm_event_t ev;
    while (!stop) {
        uint64_t want = next;
        rc = fh_shm_event_next(&r, &next, &ev);
        if (rc == FH_SHM_EV_OK) {
            events++;
            if (ev.type != FH_EV_BBO || ev.locate >= r.nbooks || !follows(&r, &f, ev.locate))
                continue;
            const fh_shm_book_t *b = &r.books[ev.locate]; /* symbol: written once per day, read unguarded */
            print_bbo(&f, ev.itch_ts, b->symbol, b->symbol_len <= 8 ? b->symbol_len : 8, ev.a, ev.c, ev.d, ev.b);
            if (ns_per_tsc && ev.pub_tsc) {
                printf(" pub+%.0fns", (double)(rdtsc() - ev.pub_tsc) * ns_per_tsc);
                if (ev.rx_tsc)
                    printf(" rx+%.0fns", (double)(rdtsc() - ev.rx_tsc) * ns_per_tsc);
            }
            putchar('\n');
            continue;
        }
        if (rc == FH_SHM_EV_OVERRUN) {
            if (next <= want) { /* defensive: an overrun moves forward (the fh/shm.h of 176f4b5 could send a
                                    * caught-up reader back a whole ring); treat it as "nothing new" */
                next = want;
            } else {
                lost += next - want;
                printf("overrun: events %" PRIu64 "..%" PRIu64 " lost (%" PRIu64 " in all); resynchronising from the "
                       "books\n", want, next - 1, lost);
                print_books(&r, &f, "resync");
                continue;
            }
        }
        /* nothing new */
        if (__atomic_load_n(&h->writer_state, __ATOMIC_ACQUIRE) == 2) {
            if (fh_shm_head(&r) >= next)
                continue; /* drain what it published before stopping */
            printf("%s: the writer stopped; %" PRIu64 " events read, %" PRIu64 " lost\n", prog, events, lost);
            break;
        }
        fflush(stdout);
        if (fh_shm_wait(&r, next - 1, 200000000u) >= next) {
            idle_since = 0;
            continue;
        }
        /* idle for 200 ms: is the writer still there? (a dead writer cannot say it stopped) */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t t = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
        if (!idle_since) {
            idle_since = t;
        } else if (t - idle_since >= 1000000000u) {
            idle_since = t;
            if (fh_shm_writer_alive(path) != 1 && atomic_load(&h->writer_state) != 2) {
                fprintf(stderr, "%s: the writer (pid %u) is gone without stopping; the books are frozen\n", prog,
                        h->writer_pid);
                status = 1;
                break;
            }
        }
    }
    if (stop)
        printf("%s: interrupted; %" PRIu64 " events read, %" PRIu64 " lost\n", prog, events, lost);
    fflush(stdout);
    free(f.state);
    fh_shm_leave(&r);
    return status;
}
