/* fh-replicate: the applied-message journal, primary -> standby, over libfabric (fabric.h).
 *
 *   fh-replicate --role primary --journal PATH --peer HOST:PORT [--provider auto|verbs|tcp] [--epoch N]
 *                [--max-outstanding N] [--heartbeat-ms N] [--from oldest|head] [--exit-when-done] [--status PATH]
 *   fh-replicate --role standby --listen HOST:PORT --journal PATH [--segment PATH] [--provider ...] [--epoch N]
 *                [--ring-mb N] [--journal-mb N] [--max-orders N] [--max-levels N] [--events N] [--depth N]
 *                [--failover-timeout-ms N] [--promote-on-silence] [--exit-when-done] [--status PATH] [--name NAME]
 *   fh-replicate --list-devices [--provider auto|verbs|tcp]
 *   two primaries (fh run): primary [--probe] [--snapshot-dir DIR]; standby [--guard [--ship-journal PATH]];
 *                both [--wins-ties]; a standby with no listen address: --role standby --peer HOST:PORT (it connects)
 *   a witness (fh witness): both [--witness HOST:PORT [--pair ID]]: the primary beats to it, the standby asks it
 *                before promoting on silence (docs/replication.md, "A witness"); a quorum: --witness once per
 *                witness (up to 5, each HOST:PORT once): beats go to all, and the standby promotes on silence only
 *                when a majority of them (n/2 + 1) have not heard the primary for the failover timeout either
 *
 * Protocol. The standby registers a ring (--ring-mb) for remote writes and, once connected, sends HELLO
 * (its ring's address and key, size, epoch, and the session and sequence its journal stands at: the primary
 * skips the records before it). A standby takes one primary after another without a restart (the primary's
 * fh-replicate restarted, or a promoted peer), counting connections. The primary follows the journal
 * (fh/journal.h reader, a separate process: the data plane never waits for it) and ships each record as a
 * frame: fh_repl_frame_t
 * (epoch, frame number, the frame's logical ring position, the time it was shipped), then the journal record
 * (header and body), 8-byte aligned, built in the primary's registered staging ring at the offset it will have
 * in the standby's ring. The records ready go in one fi_writedata (a run of frames, up to --write-kb, never past
 * the ring's end); the CQ data is the offset / 8 of the run's last frame, and the standby walks the frames from
 * where the previous write ended to that one. A frame never straddles the ring's end (the rest of the lap is
 * skipped, on both sides). Flow control: at most --max-outstanding writes without a
 * local completion, and at most a ring of bytes not acknowledged by the standby (ACK: the logical position
 * applied up to, frames and messages applied), so a write never lands on a frame the standby has not
 * applied. Control messages (HELLO, ACK, HEARTBEAT, REFUSED, BYE) are plain sends into posted receives.
 *
 * Epochs (fencing). Every frame carries the primary's epoch. A standby refuses a frame of an epoch older than
 * its own, counts it (refused_epoch), applies nothing of it and answers REFUSED with its epoch; the primary
 * then stops with a one-line error: it has been fenced. A newer epoch is adopted.
 *
 * Two primaries (docs/replication.md). A guard (--guard: a standby listening for a host that is primary) and a
 * promoted standby say in HELLO that a primary listens; the newer epoch goes on, on a tie the host with
 * --wins-ties. A primary beaten at HELLO ships nothing and stops fenced; a guard refuses a primary that does not
 * beat it and yields to one that does (a standby from then on; SIGUSR2: a standby at fh run's word, its status
 * moved to the instance's). --probe: the listener's role and epoch, one JSON line, nothing shipped. A guard
 * shipping to a joined standby answers its listen address all the same (guard_side: one connection beside it).
 *
 * The standby writes every record it applies into its own journal ring (its own followers work the same),
 * and (with --segment) applies FH_JR_MSGS records to its own engine publishing in its own segment, in order: its
 * books and event sequence equal the primary's. Without --segment it only journals: the standby host's data
 * plane (fh-dataplane --standby JOURNAL) follows that journal into its own engine, and takes its own feed lines
 * at promotion; a late-join snapshot is then left at JOURNAL.snapshot and announced by a FH_JR_SNAPSHOT record,
 * which the data plane loads.
 *
 * Promotion (fh promote: SIGUSR1; or, with --promote-on-silence, no heartbeat from the primary for
 * --failover-timeout-ms, the connection closed or not): the standby takes epoch + 1 (every later record of an
 * older epoch is refused) and appends a FH_JR_PROMOTED record (arg: the new epoch; the session and next
 * sequence of the last record applied) to its journal, after every record the primary shipped: the data plane
 * that follows it then resumes its own lines from there. Status of either role: a small file (default /dev/shm/fh-NAME.repl,
 * fh_repl_status_t) that `fh replicate status` reads. At exit each role prints one JSON line of figures. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <dirent.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fabric.h"
#include "fh/book.h"
#include "fh/journal.h"
#include "fh/journal_writer.h"
#include "fh/seg.h"

#define FRAME_MAGIC 0x314d5246u /* "FRM1" */
typedef struct fh_repl_frame {
    uint32_t magic;
    uint32_t epoch;
    uint64_t frame;    /* 1, 2, ... */
    uint64_t lpos;     /* the frame's logical ring position (laps counted) */
    uint64_t sent_ns;  /* CLOCK_REALTIME when the primary shipped it */
    uint64_t jpos;     /* the record's position in the primary's journal */
    uint32_t size;     /* the frame's bytes: this header, the record, padding */
    uint32_t seen_ago; /* ns from the primary reading the record off its journal to sent_ns (saturated): the
                          lag's first part, measured (bench/replication.sh --trace) */
} fh_repl_frame_t;
_Static_assert(sizeof(fh_repl_frame_t) == 48, "frame header");
/* Record kinds of the replication itself (fh_journal_rec_t.kind, beyond the journal's FH_JR_*): a snapshot
 * (the fh_engine_snapshot_save file) in chunks, seq = the chunk's offset, arg = its bytes, pos = the file's
 * size; then its end, seq = the sequence the snapshot is complete to + 1. */
#define FH_RR_SNAP 0x40
#define FH_RR_SNAP_END 0x41
/* The primary was overrun by its journal (records lost before it could read them): seq = the position it
 * was at, arg = where it went on. The standby marks every book stale, as for a hole. */
#define FH_RR_OVERRUN 0x42
#define SNAP_CHUNK 65536u
#define FRAME_MAX (sizeof(fh_repl_frame_t) + sizeof(fh_journal_rec_t) + FH_JOURNAL_MAX_BODY + 8)

enum { CTL_HELLO = 1, CTL_ACK, CTL_HEARTBEAT, CTL_REFUSED, CTL_BYE };
typedef struct fh_repl_ctl {
    uint32_t type, epoch;
    uint64_t a, b, c, d; /* HELLO: ring addr, key, size, the sequence to resume from (0: from the journal's
                            start); ACK: lpos, frames, messages, -;
                            HEARTBEAT: journal head, now_ns, frames shipped, messages shipped;
                            BYE: frames shipped, lpos end */
    char session[16];    /* HELLO: the session of the resume point (a standby that reconnects) */
    uint32_t flags, pad; /* HELLO: HELLO_PRIMARY, the listener is a primary (a guard, or a promoted standby) */
} fh_repl_ctl_t;
#define HELLO_PRIMARY 1u
#define HELLO_JOIN 2u /* from a standby that connected (--peer, no --listen): ship to it over this connection */
_Static_assert(sizeof(fh_repl_ctl_t) <= FH_FAB_CTL_SIZE, "a control message fits its slot");

/* The status file both roles keep (read by `fh replicate status`, handler/replicate.py). Plain stores: a
 * reader may see fields of two moments; every field is one aligned 8-byte word. */
#define STATUS_MAGIC 0x31304c5045524646ull /* "FFREPL01" */
typedef struct fh_repl_status {
    uint64_t magic, version, role, pid, state, epoch;
    char provider[32], peer[64], fabric[64];
    uint64_t frames, messages, bytes, acked_frames, acked_messages, refused_epoch, overruns;
    uint64_t last_ack_ns, last_heartbeat_ns, lag_ns, lag_messages, updated_ns, journal_pos, journal_head;
    uint64_t max_outstanding, ring_bytes;
    uint64_t connections; /* standby: primaries accepted (a new one after a restart or a failover: +1) */
    /* --witness (third parties telling a dead primary from a cut link, docs/replication.md "A witness"): their
     * addresses (comma-separated, in the order given: w1, w2, ...), the standby's last word from them (its state, the
     * primary's age and epoch the verdict rests on, when) and the datagrams (all witnesses together): beats sent, send
     * errors, queries, answers; then how many witnesses, how many must say "dead" to promote (a majority), and how
     * many said so in the last verdict. All zero without --witness. (Before the quorum: witness[64], witness_says[96]
     * and no counts, 568 bytes in all; handler/replicate.py reads both.) Then (--witness-key-file) the answers
     * ignored for their tag: a wrong one, or one keyed differently from this host (880 bytes before it). Then the
     * key file's re-reads at SIGHUP that took (its new key in use; 888 bytes before it). Then, a primary fenced
     * (exit 4), the epoch that fenced it: the peer primary's, or the standby's that refused it (896 bytes before it). */
    char witness[192], witness_says[256];
    uint64_t wit_state, wit_age_ms, wit_epoch, wit_answer_ns, wit_beats, wit_send_errors, wit_queries, wit_answers;
    uint64_t wit_count, wit_needed, wit_dead;
    uint64_t wit_bad_auth;
    uint64_t wit_rekeys;
    uint64_t fenced_by;
} fh_repl_status_t;
_Static_assert(sizeof(fh_repl_status_t) == 904, "the status file's layout: handler/replicate.py reads it");
enum { ST_STARTING = 0, ST_CONNECTING, ST_STREAMING, ST_BEHIND, ST_DONE, ST_FENCED, ST_FAILED, ST_PEER_SILENT,
       ST_PROMOTED, ST_GUARDING };

static volatile sig_atomic_t quit, promote, unguard, rekey;
static void on_signal(int s) { (void)s; quit = 1; }
/* SIGHUP (fh run's, after systemctl reload): the witnesses' key file read again (wit_rekey, from the loops that
 * look at quit), so that the key is rotated without a restart (a restarted primary's beats would pause). */
static void on_rekey(int s) { (void)s; rekey = 1; }
/* fh promote: the standby takes a new epoch (fencing its primary: every later record of the old epoch is
 * refused) and marks its journal promoted: the data plane following it takes the feed lines. */
static void on_promote(int s) { (void)s; promote = 1; }
/* A guard: this host is standby now (fh run decided it): a standby like any other from here, its status moved to
 * the instance's (/dev/shm/fh-NAME.repl). */
static void on_unguard(int s) { (void)s; unguard = 1; }

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* CPU seconds this process used (user + system): the replication's own cost, in the final JSON line. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void idle(int spin)
{
    if (!spin)
        nanosleep(&(struct timespec){ 0, 20000 }, NULL);
}

#define WIT_MAX 5 /* witnesses at most (--witness given once each): a majority of 3 of 5 rides out two down */
typedef struct opts {
    const char *role, *provider, *journal, *peer, *listen, *segment, *status, *name, *from, *snapshot;
    uint32_t epoch, ring_mb, journal_mb, max_outstanding, heartbeat_ms, max_orders, max_levels, events, depth;
    uint32_t failover_timeout_ms, trace_max, write_kb;
    int exit_when_done, list, spin, connect_timeout_ms, promote_on_silence, core;
    int guard, wins_ties, probe; /* split brain: docs/replication.md, "Two primaries" */
    const char *snapshot_dir;    /* primary: the newest sound snapshot here that the journal reaches, when needed */
    const char *trace; /* standby: per-record times (bench/replication.sh) written here at exit */
    const char *ship_journal; /* guard: the data plane's journal, shipped to a standby that connects (HELLO_JOIN) */
    /* --witness HOST:PORT (given once a witness, up to WIT_MAX), --pair ID (default --name): docs/replication.md
     * "A witness" */
    const char *witness[WIT_MAX], *pair;
    int nwitness;
    const char *witness_key_file; /* --witness-key-file: a shared secret, HMAC-SHA256 on every witness datagram */
} opts_t;

static fh_repl_status_t *status_map(const opts_t *o, const char *role)
{
    char path[512];
    if (o->status)
        snprintf(path, sizeof path, "%s", o->status);
    else
        snprintf(path, sizeof path, "/dev/shm/fh-%s.repl", o->name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || ftruncate(fd, sizeof(fh_repl_status_t))) {
        fprintf(stderr, "fh-replicate: status file %s: %s (--status PATH elsewhere)\n", path, strerror(errno));
        exit(2);
    }
    fh_repl_status_t *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (s == MAP_FAILED) {
        fprintf(stderr, "fh-replicate: status file %s: mmap: %s\n", path, strerror(errno));
        exit(2);
    }
    memset(s, 0, sizeof *s);
    s->version = 1;
    s->role = !strcmp(role, "primary") ? 1 : 2;
    s->pid = (uint64_t)getpid();
    s->epoch = o->epoch;
    snprintf(s->peer, sizeof s->peer, "%s", o->peer ? o->peer : o->listen ? o->listen : "");
    for (int i = 0, at = 0; i < o->nwitness; i++) { /* a list too long for the field ends with "..." */
        int w = snprintf(s->witness + at, sizeof s->witness - (size_t)at, "%s%s", i ? "," : "", o->witness[i]);
        if (w < 0 || (size_t)(at += w) >= sizeof s->witness) {
            memcpy(s->witness + sizeof s->witness - 4, "...", 4);
            break;
        }
    }
    s->wit_count = (uint64_t)o->nwitness, s->wit_needed = o->nwitness ? (uint64_t)o->nwitness / 2 + 1 : 0;
    __atomic_store_n(&s->magic, STATUS_MAGIC, __ATOMIC_RELEASE);
    return s;
}

static int split_hostport(const char *hp, char *host, size_t hcap, char *port, size_t pcap, const char *opt)
{
    const char *c = hp ? strrchr(hp, ':') : NULL;
    if (!c || c == hp || !c[1] || (size_t)(c - hp) >= hcap || strlen(c + 1) >= pcap) {
        fprintf(stderr, "fh-replicate: %s %s: expected HOST:PORT, e.g. 127.0.0.1:7471\n", opt, hp ? hp : "(none)");
        return -1;
    }
    memcpy(host, hp, (size_t)(c - hp));
    host[c - hp] = 0;
    strcpy(port, c + 1);
    return 0;
}

/* ---- witness (docs/replication.md, "A witness") --------------------------------------------------------------
 * Third hosts (fh witness, handler/witness.py) that both hosts of a pair reach by UDP, apart from the replication
 * link: one, or a quorum of up to WIT_MAX (one witness down must not stop every failover). The primary beats to each
 * every --heartbeat-ms from a thread of its own (a blocking connect to a cut-off standby, or a stalled link, never
 * stops the beats while this process runs, and the shipping loop never waits for them); the standby, silent primary
 * and all, asks them all before promoting on silence: it promotes only when a majority of the witnesses given
 * (n/2 + 1) have not heard the primary for the failover timeout either. One 64-byte datagram, little-endian.
 * Keyed (--witness-key-file, fh witness --key-file the same secret): magic "FHW2" and the HMAC-SHA256 tag of those
 * 64 bytes after them (96 in all), both ways: a forged beat cannot make a dead primary alive, nor a forged answer a
 * live one dead; the witness refuses a beat whose nonce is not above its sender's last (a replay), and answers
 * echo the query's nonce, which starts at a random value (a restart does not ask with a nonce answered before). */
#define WIT_MAGIC 0x31574846u       /* "FHW1" */
#define WIT_MAGIC_KEYED 0x32574846u /* "FHW2" */
#define WIT_TAG 32u                 /* HMAC-SHA256 */
#define WIT_KEY_MIN 32u             /* bytes of secret at least (handler/witness.py, KEY_MIN) */
#define WIT_KEY_MAX 1024u           /* and at most (KEY_MAX) */
enum { WIT_BEAT = 1, WIT_QUERY, WIT_ANSWER };
enum { WIT_ROLE_PRIMARY = 1, WIT_ROLE_STANDBY };
#define WIT_HEARD 1u /* ANSWER.flags: the pair's primary was heard (else age_ms is the witness's uptime) */
typedef struct fh_wit_msg {
    uint32_t magic;
    uint8_t type, role;  /* role: BEAT, the sender's (primary, standby); QUERY: the asker's */
    uint16_t flags;      /* ANSWER: WIT_HEARD */
    uint32_t epoch;      /* BEAT, QUERY: the sender's; ANSWER: the epoch the primary last said */
    uint32_t pad;
    uint64_t nonce;      /* BEAT: the sender's count; QUERY: its number, echoed in the ANSWER */
    uint64_t age_ms;     /* ANSWER: ms since the primary's last beat (not heard: since the witness started) */
    char pair[32];       /* the pair's id (--pair, default --name), NUL-padded */
} fh_wit_msg_t;
_Static_assert(sizeof(fh_wit_msg_t) == 64, "a witness datagram: handler/witness.py packs the same");
/* the standby's last word from the witnesses (fh_repl_status_t.wit_state) */
enum { WS_NONE = 0, WS_ASKED, WS_PRIMARY_ALIVE, WS_PRIMARY_SILENT, WS_NO_ANSWER, WS_ERROR };

typedef struct witness {
    int n;                      /* witnesses (--witness given n times); 0: none */
    /* --witness-key-file: its path (NULL: unkeyed, FHW1, for good) and its secret, key[cur] of keylen bytes. The
     * beating thread and the main thread sign and check with it, the main thread swaps it at SIGHUP (wit_rekey):
     * cur and keylen read and changed under keylock only, and a new key written to the other slot first. */
    const char *key_path;
    pthread_mutex_t keylock;
    int cur;
    size_t keylen;
    uint8_t key[2][WIT_KEY_MAX];
    uint64_t rekeys;            /* re-reads that took (fh_repl_status_t.wit_rekeys) */
    int fd[WIT_MAX];            /* each a connected, non-blocking UDP socket */
    char pair[32];
    uint32_t hb_ms, timeout_ms, wait_ms; /* beat interval, the failover timeout, how long answers are awaited */
    volatile uint32_t epoch;    /* the primary's beats: its epoch */
    volatile int beating;       /* the primary's beats: 0 once its data plane is gone (as the link's heartbeat) */
    fh_repl_status_t *volatile st;
    /* the standby's asking: the silence it is about (the last heartbeat's time), the query awaited (one nonce for
     * all the witnesses), the next */
    uint64_t silence_of, nonce, asked_ns, next_ask_ns, beat_ns, beats;
    /* the query awaited: each witness's answer, once (got), and whether its port was unreachable (ICMP) meanwhile */
    uint8_t got[WIT_MAX], refused[WIT_MAX], badtag[WIT_MAX]; /* badtag: an answer came, but not authentic */
    fh_wit_msg_t ans[WIT_MAX];
    int said;                   /* the last verdict said on stderr (WS_*), so that a verdict is said once */
} witness_t;
static witness_t wit = { .n = 0 }; /* one role a process: the primary's beats, or the standby's asking */

/* --witness-key-file PATH: its secret in key (the file's bytes as they are, *len of them), the same rules as fh
 * witness --key-file (handler/witness.py, load_key): a regular file of WIT_KEY_MIN to WIT_KEY_MAX bytes that group
 * and others cannot read. 0, or -1 said in one line: "PATH: " then at (at start "", at SIGHUP "at SIGHUP: "), the
 * cause and its fix, then tail; key cleared. */
static int wit_read_key(const char *path, uint8_t key[WIT_KEY_MAX], size_t *len, const char *at, const char *tail)
{
    const char *fix = "e.g. head -c 32 /dev/urandom > PATH; chmod 600 PATH";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) {
        fprintf(stderr, "fh-replicate: --witness-key-file %s: %s%s (a file of at least %u bytes of secret, %s)%s\n",
                path, at, strerror(errno), WIT_KEY_MIN, fix, tail);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    const char *why = !S_ISREG(sb.st_mode) ? "not a regular file"
                    : sb.st_mode & 077     ? "readable by group or others"
                    : sb.st_size < (off_t)WIT_KEY_MIN ? "too short" : sb.st_size > (off_t)WIT_KEY_MAX ? "too long" : NULL;
    ssize_t n = why ? -1 : read(fd, key, WIT_KEY_MAX);
    close(fd);
    if (!why && n != sb.st_size)
        why = "cannot be read whole";
    if (why) {
        if (sb.st_mode & 077 && S_ISREG(sb.st_mode))
            fprintf(stderr, "fh-replicate: --witness-key-file %s: %smode %o, readable by group or others: chmod 600 "
                    "%s%s\n", path, at, (unsigned)(sb.st_mode & 07777), path, tail);
        else
            fprintf(stderr, "fh-replicate: --witness-key-file %s: %s%s (%lld bytes): %u to %u bytes of secret, %s%s\n",
                    path, at, why, (long long)sb.st_size, WIT_KEY_MIN, WIT_KEY_MAX, fix, tail);
        OPENSSL_cleanse(key, WIT_KEY_MAX);
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

static int wit_load_key(witness_t *w, const char *path)
{
    if (wit_read_key(path, w->key[0], &w->keylen, "", ""))
        return -1;
    w->cur = 0, w->key_path = path;
    return 0;
}

/* SIGHUP: --witness-key-file read again, with the rules of the start (wit_read_key); the new key in use from the
 * next datagram on (both ways: the beats and queries signed, the answers checked), the old one cleared. A file
 * that does not pass changes nothing (the key in use stays); neither does SIGHUP without a key file. Each said in
 * one line. Called by the main thread only (the one writer of cur and keylen), from its loops. */
static void wit_rekey(witness_t *w)
{
    if (!rekey)
        return;
    rekey = 0;
    if (!w->key_path) {
        fprintf(stderr, "fh-replicate: SIGHUP: no --witness-key-file given: nothing to re-read (%s)\n",
                w->n ? "the witness datagrams stay unkeyed" : "no --witness either");
        return;
    }
    int next = !w->cur; /* the slot not in use: nobody reads it */
    size_t len;
    if (wit_read_key(w->key_path, w->key[next], &len, "at SIGHUP: ", ": the key in use stays"))
        return;
    pthread_mutex_lock(&w->keylock);
    w->cur = next, w->keylen = len;
    pthread_mutex_unlock(&w->keylock);
    OPENSSL_cleanse(w->key[!next], sizeof w->key[!next]);
    w->rekeys++;
    if (w->st)
        w->st->wit_rekeys = w->rekeys;
    fprintf(stderr, "fh-replicate: --witness-key-file %s: re-read at SIGHUP (%zu bytes): the witness datagrams are "
                    "signed with it from now on\n", w->key_path, len);
}

/* A signal during a blocking wait in fabric.c (a connect to a silent peer): SIGHUP's re-read there too. */
static void on_interrupted(void) { wit_rekey(&wit); }

/* A keyed datagram's tag: HMAC-SHA256 of its 64 bytes under the shared secret (the key in use, under keylock: the
 * beating thread and the main thread, the key swapped at SIGHUP). */
static void wit_tag(witness_t *w, const fh_wit_msg_t *m, uint8_t tag[WIT_TAG])
{
    unsigned int len = WIT_TAG;
    pthread_mutex_lock(&w->keylock);
    HMAC(EVP_sha256(), w->key[w->cur], (int)w->keylen, (const unsigned char *)m, sizeof *m, tag, &len);
    pthread_mutex_unlock(&w->keylock);
}

/* --witness HOST:PORT, each (resolved once, at start): 0, or -1 said in one line. */
static int wit_open(witness_t *w, const opts_t *o)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->keylock, NULL);
    if (o->witness_key_file && !o->nwitness) {
        fprintf(stderr, "fh-replicate: --witness-key-file %s: without --witness (give both, or neither)\n",
                o->witness_key_file);
        return -1;
    }
    if (!o->nwitness)
        return 0;
    if (o->witness_key_file && wit_load_key(w, o->witness_key_file))
        return -1;
    /* the queries' nonces from a random start: a restarted standby does not ask with a nonce that an answer
     * captured before (a replay) would match */
    if (getrandom(&w->nonce, sizeof w->nonce, 0) != (ssize_t)sizeof w->nonce) {
        fprintf(stderr, "fh-replicate: --witness: getrandom: %s\n", strerror(errno));
        return -1;
    }
    /* the standby's beats' nonces from the wall clock in ns, one more a beat: above every nonce this host beat with
     * before a restart (a witness refuses a beat not above its sender's last: a replay) */
    w->beats = now_ns();
    const char *pair = o->pair ? o->pair : o->name;
    if (!*pair || strlen(pair) >= sizeof w->pair) {
        fprintf(stderr, "fh-replicate: --pair %s: 1 to %zu characters (both hosts of the pair give the same)\n", pair,
                sizeof w->pair - 1);
        return -1;
    }
    for (int i = 0; i < o->nwitness; i++) {
        char host[256], port[32];
        if (split_hostport(o->witness[i], host, sizeof host, port, sizeof port, "--witness"))
            return -1;
        for (int k = 0; k < i; k++)
            if (!strcmp(o->witness[k], o->witness[i])) { /* one witness twice would count twice in the majority */
                fprintf(stderr, "fh-replicate: --witness %s: given twice (each witness once)\n", o->witness[i]);
                return -1;
            }
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM }, *ai = NULL;
        int gr = getaddrinfo(host, port, &hints, &ai);
        if (gr) {
            fprintf(stderr, "fh-replicate: --witness %s: %s\n", o->witness[i], gai_strerror(gr));
            return -1;
        }
        /* connected: only this witness's datagrams are read on it, and its ICMP port-unreachable is an error counted */
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
            fprintf(stderr, "fh-replicate: --witness %s: %s\n", o->witness[i], strerror(errno));
            freeaddrinfo(ai);
            return -1;
        }
        freeaddrinfo(ai);
        w->fd[w->n++] = fd;
    }
    memcpy(w->pair, pair, strlen(pair));
    w->hb_ms = o->heartbeat_ms, w->timeout_ms = o->failover_timeout_ms;
    w->wait_ms = o->heartbeat_ms > 50 ? o->heartbeat_ms : 50;
    if (w->n > 1) { /* w1, w2, ... in the verdicts: said once which is which */
        char list[WIT_MAX * 300]; /* each HOST:PORT checked under 290 characters above */
        size_t at = 0;
        for (int i = 0; i < w->n; i++)
            at += (size_t)snprintf(list + at, sizeof list - at, "%sw%d %s", i ? ", " : "", i + 1, o->witness[i]);
        fprintf(stderr, "fh-replicate: witnesses %s: a promotion on silence needs %d of them\n", list, w->n / 2 + 1);
    }
    return 0;
}

/* One datagram to each witness, never waiting (a full socket buffer or an unreachable witness: counted, the next one
 * goes). */
static void wit_send(witness_t *w, uint8_t type, uint8_t role, uint32_t epoch, uint64_t nonce)
{
    struct {
        fh_wit_msg_t m;
        uint8_t tag[WIT_TAG];
    } d = { { w->key_path ? WIT_MAGIC_KEYED : WIT_MAGIC, type, role, 0, epoch, 0, nonce, 0, { 0 } }, { 0 } };
    _Static_assert(sizeof d == sizeof(fh_wit_msg_t) + WIT_TAG, "a keyed datagram: the 64 bytes, then the tag");
    memcpy(d.m.pair, w->pair, sizeof d.m.pair);
    size_t len = sizeof d.m;
    if (w->key_path) {
        wit_tag(w, &d.m, d.tag);
        len = sizeof d;
    }
    fh_repl_status_t *st = w->st;
    for (int i = 0; i < w->n; i++) {
        if (send(w->fd[i], &d, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
            if (st)
                st->wit_send_errors++;
        } else if (st && type == WIT_BEAT)
            st->wit_beats++;
    }
}

/* The primary's beats: every heartbeat interval while this process runs and its data plane is alive (beating),
 * from process start (so also while it connects, or waits for the standby's HELLO). Signals stay with the main
 * thread. */
static void *wit_beater(void *arg)
{
    witness_t *w = arg;
    struct timespec iv = { w->hb_ms / 1000, (long)(w->hb_ms % 1000) * 1000000L };
    uint64_t prev = now_ns(), late = 0;
    /* the nonce: from the wall clock in ns, one more a beat, so above every beat this host sent before a restart
     * (one beat a ms at most: a restart's new start is past them); a witness refuses a beat not above its sender's
     * last (a captured beat sent again) */
    for (uint64_t n = prev; !quit; n++) {
        if (w->beating)
            wit_send(w, WIT_BEAT, WIT_ROLE_PRIMARY, w->epoch, n);
        nanosleep(&iv, NULL);
        /* a beat four intervals late (this process starved of CPU, or stopped): said, since a standby whose link
         * is cut may take such a gap at the witness for a dead primary (the first ten, then every 1000th) */
        uint64_t t = now_ns(), gap_ms = (t - prev) / 1000000ull;
        prev = t;
        if (gap_ms >= 4ull * w->hb_ms && (++late <= 10 || !(late % 1000)))
            fprintf(stderr, "fh-replicate: witness: a beat %" PRIu64 " ms after the one before (every %u ms expected; "
                            "%" PRIu64 " late so far)\n", gap_ms, w->hb_ms, late);
    }
    return NULL;
}

static int wit_start_beats(witness_t *w, uint32_t epoch)
{
    if (!w->n)
        return 0;
    pthread_t t;
    sigset_t all, old;
    sigfillset(&all);
    w->epoch = epoch, w->beating = 1;
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t, NULL, wit_beater, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        fprintf(stderr, "fh-replicate: --witness: cannot start the beating thread: %s\n", strerror(rc));
        return -1;
    }
    pthread_detach(t);
    return 0;
}

/* The standby's own beat (its role and epoch, for the witnesses' record of the pair), at most every heartbeat
 * interval; called where the standby is idle, never per record. */
static void wit_standby_beat(witness_t *w, uint64_t now, int promoted, uint32_t epoch)
{
    if (!w->n || now - w->beat_ns < (uint64_t)w->hb_ms * 1000000ull)
        return;
    w->beat_ns = now;
    wit_send(w, WIT_BEAT, promoted ? WIT_ROLE_PRIMARY : WIT_ROLE_STANDBY, epoch, ++w->beats);
}

static void wit_say(witness_t *w, fh_repl_status_t *st, int state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void wit_say(witness_t *w, fh_repl_status_t *st, int state, const char *fmt, ...)
{
    char text[384]; /* the log line whole; the status field holds what fits (every verdict of 5 witnesses fits it) */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(st->witness_says, text, sizeof st->witness_says - 1);
    st->witness_says[sizeof st->witness_says - 1] = 0;
    st->wit_state = (uint64_t)state;
    if (w->said != state) /* a verdict said once, until it changes (asked again every heartbeat interval) */
        fprintf(stderr, "fh-replicate: %s\n", text);
    w->said = state;
}

/* A witness's answer to the query awaited, in a few words ("w2: dead 900 ms"), appended at out + *at. */
static void wit_word(const witness_t *w, int i, uint32_t timeout_ms, char *out, size_t cap, size_t *at)
{
    const fh_wit_msg_t *a = &w->ans[i];
    int k;
    if (*at >= cap)
        return;
    if (!w->got[i])
        k = snprintf(out + *at, cap - *at, "%sw%d: %s", i ? "; " : "", i + 1,
                     w->refused[i] ? "no answer (port unreachable)"
                     : w->badtag[i] ? "no authentic answer (a bad tag: another key?)" : "no answer");
    else if (a->age_ms >= timeout_ms)
        k = snprintf(out + *at, cap - *at, "%sw%d: %s %" PRIu64 " ms", i ? "; " : "", i + 1,
                     a->flags & WIT_HEARD ? "dead" : "never heard, up", a->age_ms);
    else if (a->flags & WIT_HEARD)
        k = snprintf(out + *at, cap - *at, "%sw%d: alive %" PRIu64 " ms ago, epoch %u", i ? "; " : "", i + 1,
                     a->age_ms, a->epoch);
    else
        k = snprintf(out + *at, cap - *at, "%sw%d: up %" PRIu64 " ms only", i ? "; " : "", i + 1, a->age_ms);
    *at += k > 0 ? (size_t)k : 0;
}

/* The primary silent for the failover timeout since last_hb, and --promote-on-silence: may this standby promote?
 * Without a witness, yes (today's rule: a cut link then makes two primaries until it returns). With witnesses: only
 * once a majority of them (n/2 + 1 of the n given) answer that they have not heard the primary for the failover
 * timeout either; an answer that still hears it (the replication link is cut, the primary alive), a witness just
 * started, and no answer within max(heartbeat, 50 ms) (a witness down, or this host the one cut off) all count
 * against. Decided as soon as a majority says dead (promote) or can no longer say it (hold, said in the status,
 * witness_says, naming each witness's answer); held, all are asked again every heartbeat interval. One query (one
 * nonce) goes to every witness; an answer counts for the socket it came on, once. Never waits: the query is sent,
 * its answers read on later calls. why gets the promotion's cause. */
static int wit_promote_ok(witness_t *w, fh_repl_status_t *st, uint32_t epoch, uint64_t last_hb, char *why, size_t cap)
{
    if (!w->n) {
        snprintf(why, cap, "%s", "");
        return 1;
    }
    uint64_t now = now_ns();
    if (w->silence_of != last_hb) /* a new silence: asked afresh */
        w->silence_of = last_hb, w->asked_ns = 0, w->next_ask_ns = 0, w->said = WS_NONE;
    for (int i = 0; i < w->n; i++) {
        struct {
            fh_wit_msg_t m;
            uint8_t tag[WIT_TAG], more[32]; /* more: a longer datagram is seen as such, not cut to size */
        } d;
        fh_wit_msg_t m;
        ssize_t n;
        while ((n = recv(w->fd[i], &d, sizeof d, MSG_DONTWAIT)) >= 0 || errno == EINTR || errno == ECONNREFUSED) {
            if (n < 0) { /* the witness's port unreachable (ICMP) on an earlier datagram */
                if (errno == ECONNREFUSED) {
                    st->wit_send_errors++;
                    w->refused[i] = 1;
                }
                continue;
            }
            /* authentic (keyed: FHW2, its tag checked in constant time; else FHW1), else ignored; one of the other
             * kind, or a wrong tag, counted (wit_bad_auth): a forgery, or the key on one side only, or another key */
            int keyed = n == (ssize_t)(sizeof d.m + WIT_TAG) && d.m.magic == WIT_MAGIC_KEYED;
            int plain = n == (ssize_t)sizeof d.m && d.m.magic == WIT_MAGIC;
            if (!keyed && !plain)
                continue; /* not one of ours */
            int ok = !w->key_path ? plain : 0;
            if (w->key_path && keyed) {
                uint8_t t[WIT_TAG];
                wit_tag(w, &d.m, t);
                ok = !CRYPTO_memcmp(t, d.tag, WIT_TAG);
            }
            if (!ok) {
                st->wit_bad_auth++;
                w->badtag[i] = 1;
                continue;
            }
            m = d.m;
            if (m.type != WIT_ANSWER || !w->asked_ns ||
                m.nonce != w->nonce || memcmp(m.pair, w->pair, sizeof m.pair) || w->got[i])
                continue; /* a late answer to an earlier query, a second one, or not one */
            w->got[i] = 1, w->ans[i] = m;
            st->wit_answers++;
        }
    }
    if (w->asked_ns) {
        /* the count: dead (not heard for the timeout: heard that long ago, or never by a witness up that long),
         * against (alive, or a witness up less than the timeout); the rest not answered (yet) */
        int dead = 0, against = 0, answered = 0, need = w->n / 2 + 1;
        int fresh = -1, stale = -1; /* the answers a verdict rests on: the youngest "alive", the youngest "dead" */
        uint64_t again_ms = w->hb_ms;
        for (int i = 0; i < w->n; i++) {
            if (!w->got[i])
                continue;
            const fh_wit_msg_t *a = &w->ans[i];
            answered++;
            if (a->age_ms >= w->timeout_ms) {
                dead++;
                if (stale < 0 || a->age_ms < w->ans[stale].age_ms)
                    stale = i;
                continue;
            }
            against++;
            if (fresh < 0 || a->age_ms < w->ans[fresh].age_ms)
                fresh = i;
            /* asked again when this witness's silence would reach the timeout, if sooner than a heartbeat interval
             * (the primary's beats there need not be in phase with its heartbeats here) */
            if (w->timeout_ms - a->age_ms < again_ms)
                again_ms = w->timeout_ms - a->age_ms;
        }
        int expired = now - w->asked_ns > (uint64_t)w->wait_ms * 1000000ull;
        if (dead < need && w->n - against >= need && !expired)
            return 0; /* a majority may still say dead: its answers awaited */
        w->asked_ns = 0;
        /* no answer within the wait: already a wait longer than a heartbeat interval, asked again at once */
        w->next_ask_ns = expired && answered < w->n ? now : now + again_ms * 1000000ull;
        st->wit_dead = (uint64_t)dead;
        int rest = dead >= need || fresh < 0 ? stale : fresh;
        if (rest >= 0)
            st->wit_age_ms = w->ans[rest].age_ms, st->wit_epoch = w->ans[rest].epoch;
        if (answered)
            st->wit_answer_ns = now;
        if (w->n == 1) { /* one witness: its own words */
            const fh_wit_msg_t *a = &w->ans[0];
            if (!answered) {
                if (w->badtag[0])
                    wit_say(w, st, WS_NO_ANSWER, "witness: no authentic answer within %u ms (answers with a bad tag: "
                            "is it keyed with the same --witness-key-file?): not promoting", w->wait_ms);
                else /* keyed: a witness keyed otherwise (or not) answers nothing; it counts the queries bad_auth */
                    wit_say(w, st, WS_NO_ANSWER, "witness: no answer within %u ms: not promoting (this host may be the "
                            "one cut off%s)", w->wait_ms,
                            w->key_path ? ", or the witness not keyed with this --witness-key-file: its bad_auth" : "");
                return 0;
            }
            if (dead) {
                if (a->flags & WIT_HEARD)
                    snprintf(why, cap, "; the witness: none for %" PRIu64 " ms either", a->age_ms);
                else
                    snprintf(why, cap, "; the witness never heard it (up %" PRIu64 " ms)", a->age_ms);
                wit_say(w, st, WS_PRIMARY_SILENT, "witness: primary silent (%s %" PRIu64 " ms): promoting",
                        a->flags & WIT_HEARD ? "heard" : "never heard; up", a->age_ms);
                return 1;
            }
            if (a->flags & WIT_HEARD)
                wit_say(w, st, WS_PRIMARY_ALIVE, "witness: primary alive (heard %" PRIu64 " ms ago, epoch %u): not "
                        "promoting (replication link cut?)", a->age_ms, a->epoch);
            else /* a witness just started knows nothing yet: not before it has listened for the failover timeout */
                wit_say(w, st, WS_PRIMARY_ALIVE, "witness: up %" PRIu64 " ms only, no primary heard yet: not "
                        "promoting before it has listened %u ms", a->age_ms, w->timeout_ms);
            return 0;
        }
        char each[224];
        size_t at = 0;
        each[0] = 0;
        for (int i = 0; i < w->n; i++)
            wit_word(w, i, w->timeout_ms, each, sizeof each, &at);
        if (dead >= need) {
            snprintf(why, cap, "; witnesses: %d of %d say dead (%s)", dead, w->n, each);
            wit_say(w, st, WS_PRIMARY_SILENT, "witnesses: %d of %d say dead (%s): promoting", dead, w->n, each);
            return 1;
        }
        /* held: by a witness that hears the primary (or one just started), else by silence (witnesses down, or
         * this host the one cut off) */
        wit_say(w, st, against ? WS_PRIMARY_ALIVE : WS_NO_ANSWER, "witnesses: %d of %d say dead (%s): not promoting "
                "(%d needed%s)", dead, w->n, each, need, against ? "; replication link cut?"
                : w->key_path ? "; this host cut off, or the witnesses keyed otherwise?" : "; this host cut off?");
        return 0;
    }
    if (now >= w->next_ask_ns) {
        w->asked_ns = now;
        memset(w->got, 0, sizeof w->got);
        memset(w->refused, 0, sizeof w->refused);
        memset(w->badtag, 0, sizeof w->badtag);
        wit_send(w, WIT_QUERY, WIT_ROLE_STANDBY, epoch, ++w->nonce);
        st->wit_queries++;
        if (w->said == WS_NONE)
            st->wit_state = WS_ASKED;
    }
    return 0;
}

/* ---- primary ------------------------------------------------------------------------------------------ */

static int send_ctl(fh_fab_t *f, const fh_repl_ctl_t *m)
{
    for (int tries = 0; tries < 100000; tries++) {
        int rc = fh_fab_send(f, m, sizeof *m);
        if (!rc)
            return 0;
        if (rc != -FI_EAGAIN)
            return -1;
        fh_fab_op_t *done[64];
        if (fh_fab_poll_tx(f, done, 64) < 0)
            return -1;
        /* writes completed here are not lost to the caller: it counts outstanding by frames acknowledged too */
    }
    return fh_fab_fail("control send: no free slot for 100,000 polls (is the link stalled?)");
}

/* Has the standby this record already (resume point: session, next_seq)? Records of its session before the
 * point, and records of other sessions before the first of its session. A record across the point is shipped
 * (the standby takes its tail). */
static int held_by_standby(const fh_journal_rec_t *r, const char *session, uint64_t next_seq, int *seen)
{
    if (r->kind == FH_JR_PAD)
        return 1;
    if (memcmp(r->session, session, FH_JOURNAL_SESSION_LEN))
        return !*seen; /* a session before the resume point's; one after it is new to the standby */
    *seen = 1;
    uint64_t end = r->kind == FH_JR_MSGS ? r->seq + r->count : r->kind == FH_JR_LOST ? r->seq + r->arg : r->seq;
    return r->kind == FH_JR_MSGS || r->kind == FH_JR_LOST ? end <= next_seq : end < next_seq;
}

/* Does this journal still hold the standby's resume point: a record of its session at or before next_seq? */
static int resume_covered(const fh_journal_reader_t *jr0, const char *session, uint64_t next_seq)
{
    fh_journal_reader_t jr = *jr0;
    static uint8_t buf[sizeof(fh_journal_rec_t) + FH_JOURNAL_MAX_BODY];
    fh_journal_rec_t *rec = (fh_journal_rec_t *)buf;
    uint64_t pos = fh_journal_oldest(&jr);
    for (;;) {
        int r = fh_journal_next(&jr, &pos, rec, buf + sizeof *rec);
        if (r == FH_JOURNAL_OVERRUN)
            continue;
        if (r != FH_JOURNAL_OK)
            return 0;
        if (rec->kind == FH_JR_PAD || memcmp(rec->session, session, FH_JOURNAL_SESSION_LEN))
            continue;
        return rec->seq <= next_seq;
    }
}

/* Two primaries (each host's state says primary): the one that goes on is the newer epoch; on a tie the host with
 * --wins-ties (fh run gives it to the host whose listen address is the lower). Does a peer primary at epoch
 * `theirs` beat this host at `mine`? */
static int peer_wins(uint32_t theirs, uint32_t mine, int wins_ties)
{
    return theirs > mine || (theirs == mine && !wins_ties);
}

/* Connect to --peer (a refused connection is tried again every 100 ms, until --connect-timeout-ms) and wait for the
 * listener's HELLO as long: 0, or 3 with the cause said on stderr. */
static int connect_hello(const opts_t *o, fh_fab_t *f, const char *host, const char *port, fh_repl_ctl_t *hello)
{
    int crc;
    for (uint64_t t1 = now_ns();;) {
        crc = fh_fab_connect(f, o->provider, host, port, o->connect_timeout_ms);
        wit_rekey(&wit);
        if (!crc || quit || !strstr(fh_fab_err(), "refused") ||
            now_ns() - t1 > (uint64_t)o->connect_timeout_ms * 1000000ull)
            break;
        fh_fab_close(f);
        memset(f, 0, sizeof *f);
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
    }
    if (crc) {
        fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
        return 3;
    }
    memset(hello, 0, sizeof *hello);
    for (uint64_t t0 = now_ns(); !quit;) {
        wit_rekey(&wit);
        fh_fab_rx_t rx[16];
        int n = fh_fab_poll_rx(f, rx, 16);
        if (n < 0) {
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            return 3;
        }
        for (int i = 0; i < n; i++) {
            if (!rx[i].write && rx[i].len >= sizeof *hello)
                memcpy(hello, rx[i].msg, sizeof *hello);
            fh_fab_rx_done(f, &rx[i]);
        }
        if (hello->type == CTL_HELLO)
            return 0;
        if (now_ns() - t0 > (uint64_t)o->connect_timeout_ms * 1000000ull) {
            fprintf(stderr, "fh-replicate: the standby at %s sent no HELLO within %d ms\n", o->peer,
                    o->connect_timeout_ms);
            return 3;
        }
        idle(0);
    }
    return 3;
}

/* --probe (fh run, before a primary's data plane starts): what listens at --peer? One JSON line: its role
 * (primary: a guard or a promoted standby; standby) and epoch, and whether it beats this host (--epoch,
 * --wins-ties). Nothing is shipped, no journal is needed. 0, or 3 when nothing answered in time. */
static int probe(const opts_t *o, const char *host, const char *port)
{
    fh_fab_t f;
    memset(&f, 0, sizeof f);
    fh_repl_ctl_t hello;
    int rc = connect_hello(o, &f, host, port, &hello);
    if (!rc) {
        int prim = !!(hello.flags & HELLO_PRIMARY);
        printf("{\"peer\": \"%s\", \"role\": \"%s\", \"epoch\": %u, \"peer_wins\": %s}\n", o->peer,
               prim ? "primary" : "standby", hello.epoch,
               prim && peer_wins(hello.epoch, o->epoch, o->wins_ties) ? "true" : "false");
        fflush(stdout);
    }
    fh_fab_close(&f);
    return rc;
}

typedef struct standby_ctx {
    uint8_t *ring;
    uint64_t ring_bytes;
    fh_fab_mr_t rmr;
} standby_ctx_t;

static int register_ring(fh_fab_t *f, void *arg)
{
    standby_ctx_t *c = arg;
    return fh_fab_reg(f, c->ring, c->ring_bytes, FI_REMOTE_WRITE, &c->rmr);
}

/* A guard shipping to a standby that joined (primary_on given its connection) still answers its listen address,
 * as when idle: a connection request is accepted beside the shipped one (one at a time: its own domain and queues
 * on the listener's EQ, the guard's ring registered on it) and told HELLO_PRIMARY at the guard's epoch. A primary
 * that beats this host (its first heartbeat or frame says its epoch) makes the guard yield: the shipping stops and
 * the connection, with what came on it (pend), is the standby's from then on (primary_on returns 6). One that does
 * not is refused (REFUSED; it stops fenced at the HELLO already, as a probe just reads it and closes); a second
 * standby joining is refused with REFUSED_BUSY (it connects again); SIGUSR2 (fh run: this host is standby now)
 * stops the shipping (7). Polled every 1 ms of the shipping loop, never waiting. */
#define REFUSED_BUSY 1u /* REFUSED.flags: this guard ships to another standby (one at a time): connect again */
#define REFUSED_YIELDED 2u /* REFUSED.flags: this guard, shipping to the standby that joined, yields to a primary of
                            * epoch a that connected to it: the joined standby's primary moved on to another host */
typedef struct guard_link {
    fh_fab_t *side;        /* the second connection's storage (static: fh_fab_adopt keeps naming it) */
    standby_ctx_t c2;      /* the guard's ring, registered on side */
    fh_repl_ctl_t hello;   /* what the guard says (its ring's address and key filled in per connection) */
    int state;             /* 0 none, 1 accepted (FI_CONNECTED awaited), 2 HELLO sent, 3 refused, closing */
    uint64_t since;
    fh_fab_rx_t pend[16];  /* the yielded-to primary's first completions, not yet applied */
    int npend;
    uint32_t theirs;       /* that primary's epoch */
    uint64_t refused_primaries, refused_standbys, busy_requests;
    int joiner_gone;       /* the shipped standby's endpoint shut down */
} guard_link_t;

/* Tell a standby that joined this guard that its primary moved on (REFUSED with REFUSED_YIELDED; theirs: the new
 * primary's epoch, 0 not known here: this host is standby now), the send's completion awaited up to 100 ms so that
 * it goes before the connection closes. */
static void tell_moved_on(fh_fab_t *f, uint32_t epoch, uint64_t theirs)
{
    fh_repl_ctl_t yl = { CTL_REFUSED, epoch, theirs, 0, 0, 0, { 0 }, REFUSED_YIELDED, 0 };
    int n0 = f->ntxfree;
    if (!send_ctl(f, &yl))
        for (uint64_t t0 = now_ns(); f->ntxfree < n0 && now_ns() - t0 < 100000000ull;) {
            fh_fab_op_t *done[64];
            if (fh_fab_poll_tx(f, done, 64) < 0)
                break;
        }
}

static void side_drop(guard_link_t *g)
{
    fh_fab_dereg(&g->c2.rmr);
    fh_fab_side_close(g->side);
    g->state = 0, g->npend = 0;
}

/* 0 go on shipping, 6 yield (the side connection and g->pend for the standby's loop). */
static int guard_side(const opts_t *o, fh_fab_t *fp, guard_link_t *g)
{
    uint32_t ev;
    struct fi_eq_cm_entry en;
    int err;
    for (int k = 0; k < 8; k++) {
        int r = fh_fab_event(fp, &ev, &en, &err);
        if (r == 0)
            break;
        if (r < 0) {
            fprintf(stderr, "fh-replicate: guard: %s\n", fh_fab_err());
            break;
        }
        int is_side = g->state && g->side->ep && en.fid == &g->side->ep->fid;
        int is_joiner = fp->ep && en.fid == &fp->ep->fid;
        if (r == 2 || ev == FI_SHUTDOWN) {
            if (is_side)
                side_drop(g); /* a probe that read the HELLO, a primary fenced by it, a refused standby */
            else if (is_joiner) {
                g->joiner_gone = 1;
                break; /* what follows (that standby connecting again) left in the queue for the listening loop */
            }
            continue;
        }
        if (ev == FI_CONNREQ) {
            if (g->state) { /* one connection beside the shipped one at a time: this one tries again */
                fi_reject(fp->pep, en.info->handle, NULL, 0);
                fi_freeinfo(en.info);
                g->busy_requests++;
                continue;
            }
            if (fh_fab_accept_req(fp, g->side, en.info, register_ring, &g->c2)) {
                fprintf(stderr, "fh-replicate: guard: a connection while shipping: %s\n", fh_fab_err());
                side_drop(g);
                continue;
            }
            g->state = 1, g->since = now_ns();
        } else if (ev == FI_CONNECTED && is_side) {
            fh_repl_ctl_t h = g->hello;
            h.a = g->c2.rmr.addr, h.b = g->c2.rmr.key;
            if (send_ctl(g->side, &h)) {
                fprintf(stderr, "fh-replicate: guard: hello: %s\n", fh_fab_err());
                side_drop(g);
                continue;
            }
            g->state = 2;
        }
    }
    if (g->state >= 2) {
        fh_fab_op_t *done[16];
        fh_fab_rx_t rx[16];
        int nt = fh_fab_poll_tx(g->side, done, 16), n = nt < 0 ? nt : fh_fab_poll_rx(g->side, rx, 16);
        if (n < 0) {
            side_drop(g);
            return 0;
        }
        for (int i = 0; i < n; i++) {
            fh_repl_ctl_t m = { 0 };
            uint32_t theirs = 0;
            int primary = 0;
            if (!rx[i].write && rx[i].len >= sizeof m) {
                memcpy(&m, rx[i].msg, sizeof m);
                primary = m.type == CTL_HEARTBEAT, theirs = m.epoch;
            } else if (rx[i].write) { /* a connection's first write starts at the ring's start */
                const fh_repl_frame_t *fr = (const fh_repl_frame_t *)g->c2.ring;
                primary = fr->magic == FRAME_MAGIC, theirs = fr->epoch;
            }
            if (g->state == 2 && primary && peer_wins(theirs, g->hello.epoch, o->wins_ties)) {
                g->theirs = theirs;
                for (int k = i; k < n; k++) /* kept for the standby's loop, in order */
                    g->pend[g->npend++] = rx[k];
                fprintf(stderr, "fh-replicate: guard: a primary at epoch %u connected while this guard ships to a "
                                "standby that joined: the shipping stops\n", theirs);
                return 6;
            }
            fh_fab_rx_done(g->side, &rx[i]);
            if (g->state == 2 && primary) {
                fh_repl_ctl_t no = { CTL_REFUSED, g->hello.epoch, theirs, 0, 0, 0, { 0 }, 0, 0 };
                send_ctl(g->side, &no);
                g->refused_primaries++, g->state = 3, g->since = now_ns();
                fprintf(stderr, "fh-replicate: guard: a primary at epoch %u connected while this guard ships, this host "
                                "primary at epoch %u: refused (fenced)\n", theirs, g->hello.epoch);
            } else if (g->state == 2 && m.type == CTL_HELLO && (m.flags & HELLO_JOIN)) {
                fh_repl_ctl_t no = { CTL_REFUSED, g->hello.epoch, 0, 0, 0, 0, { 0 }, REFUSED_BUSY, 0 };
                send_ctl(g->side, &no);
                if (!g->refused_standbys++)
                    fprintf(stderr, "fh-replicate: guard: a second standby joined while this guard ships to one: "
                                    "refused (one at a time; it connects again)\n");
                g->state = 3, g->since = now_ns();
            }
        }
    }
    /* a refused peer closes by itself; one that says nothing (or does not close) is let go */
    if (g->state && now_ns() - g->since > (g->state == 3 ? 200000000ull : 10000000000ull))
        side_drop(g);
    return 0;
}

/* --snapshot-dir: the sound snapshot (*.snap) with the highest sequence whose next sequence this journal still
 * holds (so that the journal after it follows without a hole). path gets it; 0, or -1 with nothing fit. */
static int pick_snapshot(const char *dir, const fh_journal_reader_t *jr, char *path, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    uint64_t best = 0;
    struct dirent *de;
    char p[4200];
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".snap") || de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        fh_snapshot_meta_t m;
        if (fh_engine_snapshot_load(NULL, p, &m) || m.next_seq <= best || !resume_covered(jr, m.session, m.next_seq))
            continue;
        best = m.next_seq;
        snprintf(path, cap, "%s", p);
    }
    closedir(d);
    return best ? 0 : -1;
}

/* A snapshot file, checked whole, into *buf (freed first): 0, or -1 said on stderr. */
static int read_snapshot(const char *path, uint8_t **buf, uint64_t *len, fh_snapshot_meta_t *meta)
{
    if (fh_engine_snapshot_load(NULL, path, meta)) {
        fprintf(stderr, "fh-replicate: snapshot %s: %s\n", path, fh_errmsg());
        return -1;
    }
    free(*buf);
    *buf = NULL;
    FILE *sf = fopen(path, "rb");
    long n = -1;
    if (!sf || fseek(sf, 0, SEEK_END) || (n = ftell(sf)) < 0 || fseek(sf, 0, SEEK_SET) ||
        !(*buf = malloc(n ? (size_t)n : 1)) || fread(*buf, 1, (size_t)n, sf) != (size_t)n) {
        fprintf(stderr, "fh-replicate: snapshot %s: cannot read it\n", path);
        if (sf)
            fclose(sf);
        return -1;
    }
    fclose(sf);
    *len = (uint64_t)n;
    return 0;
}

/* The primary: connect to --peer, read the standby's HELLO, ship --journal. Or (given: a guard on this primary's
 * listen address, a standby having connected to it and said HELLO with HELLO_JOIN) ship --ship-journal over that
 * connection, given_hello the standby's; the connection is left to the caller. A guard's returns: 6 yield (a newer
 * primary connected), 7 SIGUSR2, 8 the joined standby left before anything was shipped (its journal awaited). */
static int primary_on(const opts_t *o, fh_fab_t *given, const fh_repl_ctl_t *given_hello, guard_link_t *g)
{
    char host[256], port[32];
    const char *jpath = given ? o->ship_journal : o->journal;
    if (!given && split_hostport(o->peer, host, sizeof host, port, sizeof port, "--peer"))
        return 2;
    if (!given && o->probe)
        return probe(o, host, port);
    fh_journal_reader_t jr;
    int rc;
    /* the data plane may be starting: wait for its journal as long as for the standby */
    for (uint64_t t0 = now_ns();;) {
        rc = fh_journal_join(&jr, jpath);
        wit_rekey(&wit);
        if ((rc != -ENOENT && rc != -EAGAIN) || quit || now_ns() - t0 > (uint64_t)o->connect_timeout_ms * 1000000ull)
            break;
        if (g && unguard) { /* a guard's shipping not begun: SIGUSR2 stops it here too */
            fprintf(stderr, "fh-replicate: guard: SIGUSR2 (this host is standby now): the shipping stops\n");
            rc = 7;
            break;
        }
        if (g && guard_side(o, given, g) == 6) /* ... and its listen address is answered meanwhile */
            return 6;
        fh_fab_op_t *done[16]; /* (the joined standby's connection progressed: its close seen; nothing is posted) */
        if (g && fh_fab_poll_tx(given, done, 16) < 0)
            g->joiner_gone = 1;
        if (g && g->joiner_gone) { /* the standby that joined left before anything was shipped: listen again (a
                                    * joined standby told nothing for its failover timeout connects again) */
            rc = 8;
            break;
        }
        nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
    }
    if (g && g->state && rc)
        side_drop(g);
    if (rc == 7 || rc == 8)
        return rc;
    if (rc) {
        fprintf(stderr, "fh-replicate: journal %s: %s\n", jpath,
                rc == -ENOENT ? "none: is the data plane running with --journal?"
                : rc == -EPROTO ? "not an fh journal of this layout version" : strerror(-rc));
        return 2;
    }
    /* a guard's own status keeps saying guarding (fh run reads a guard that streams as one that yielded): the
     * shipping's figures go to a status of its own, not mapped; its line on stderr says it ships */
    static fh_repl_status_t shipping;
    fh_repl_status_t *st = given ? memset(&shipping, 0, sizeof shipping) : status_map(o, "primary");
    if (!given)
        wit.st = st, st->wit_rekeys = wit.rekeys; /* the beats' counts */
    st->state = ST_CONNECTING;
    st->max_outstanding = o->max_outstanding;
    fh_fab_t f0, *fp = given ? given : &f0;
    memset(&f0, 0, sizeof f0);
    uint8_t *snap = NULL, *stage = NULL;
    fh_fab_mr_t smr = { 0 };
    fh_fab_op_t *ops = NULL;
    int *freeop = NULL, streaming = 0, ret = 0;
    /* a standby that is still starting (fh run starts both hosts at once): refused is tried again, every 100 ms,
     * for as long as the connect timeout; then its HELLO: its ring */
    fh_repl_ctl_t hello;
    if (given)
        hello = *given_hello;
    else if (connect_hello(o, fp, host, port, &hello)) {
        st->state = ST_FAILED;
        { ret = 3; goto out; }
    }
    snprintf(st->provider, sizeof st->provider, "%s", fp->provider);
    snprintf(st->fabric, sizeof st->fabric, "%s", fp->fabric_name);
    /* A primary listens there (the peer's guard, or a promoted standby): two primaries. The newer epoch goes on, on
     * a tie the host with --wins-ties; the other ships nothing and stops fenced (fh run makes its host standby). */
    if (hello.flags & HELLO_PRIMARY) {
        if (peer_wins(hello.epoch, o->epoch, o->wins_ties)) {
            fprintf(stderr, "fh-replicate: fenced: the peer at %s is primary at epoch %u, this host at %u (%s): not "
                            "shipping; this host is to join as standby (no split brain)\n", o->peer, hello.epoch,
                    o->epoch, hello.epoch > o->epoch ? "the newer epoch goes on" : "a tie: the peer wins it");
            st->state = ST_FENCED;
            st->fenced_by = hello.epoch;
            ret = 4;
            goto out;
        }
        fprintf(stderr, "fh-replicate: the peer at %s is primary too, at epoch %u, this host at %u (%s): shipping; "
                        "the peer joins as standby\n", o->peer, hello.epoch, o->epoch,
                hello.epoch < o->epoch ? "the newer epoch goes on" : "a tie: this host wins it");
    }
    /* The standby's epoch is in its HELLO, but the fence is the standby's: it refuses every record of an older
     * epoch (counted) and answers REFUSED, which stops this primary below. */
    if (hello.epoch > o->epoch)
        fprintf(stderr, "fh-replicate: the standby is at epoch %u, this primary at %u: its records will be refused\n",
                hello.epoch, o->epoch);
    /* A standby that has records already (it reconnects: this primary restarted, or it is a new primary) says
     * where its journal stands: the records before that point are not shipped again. Is that point still in this
     * journal (a record of its session at or before it)? If not, the journal has lapped it: the snapshot, if
     * given, else a hole (its books stale). */
    int resume = hello.d != 0, covered = 0, seen_session = 0;
    if (resume)
        covered = resume_covered(&jr, hello.session, hello.d);
    /* --snapshot-dir (fh run): a snapshot only where the journal does not reach: a new standby of a journal that
     * has lapped, or a standby whose point the journal no longer holds */
    const char *snapshot = o->snapshot;
    char picked[4200];
    int lapped = fh_journal_oldest(&jr) > 0 && !strcmp(o->from, "oldest");
    if (!snapshot && o->snapshot_dir && (resume ? !covered : lapped)) {
        if (!pick_snapshot(o->snapshot_dir, &jr, picked, sizeof picked)) {
            snapshot = picked;
            fprintf(stderr, "fh-replicate: %s: snapshot %s (the newest in %s that the journal follows), then the "
                            "journal after it\n", resume ? "the journal no longer reaches back to the standby's point"
                            : "a new standby and a journal that has lapped", picked, o->snapshot_dir);
        } else
            fprintf(stderr, "fh-replicate: %s, and no snapshot in %s is followed by the journal (fh record's "
                            "snapshot_every more often, or journal.ring_mb larger)\n", resume ?
                            "the journal no longer reaches back to the standby's point" :
                            "a new standby and a journal that has lapped", o->snapshot_dir);
    }
    if (resume) {
        char sess[FH_JOURNAL_SESSION_LEN + 1] = { 0 };
        memcpy(sess, hello.session, FH_JOURNAL_SESSION_LEN);
        fprintf(stderr, "fh-replicate: the standby holds session %s up to sequence %" PRIu64 ": %s\n", sess,
                hello.d - 1, covered ? "resuming after it"
                : snapshot ? "this journal no longer reaches back to it: the snapshot first"
                              : "this journal no longer reaches back to it (no --snapshot): its books stale");
    }
    /* a standby that joins late: the snapshot first (checked whole here: a damaged one is never shipped) */
    uint64_t snap_len = 0, snap_off = 0;
    int snap_end = 1;
    fh_snapshot_meta_t smeta = { 0 };
    if (snapshot && !covered) {
        if (read_snapshot(snapshot, &snap, &snap_len, &smeta)) {
            ret = 5;
            goto out;
        }
        snap_end = 0;
        fprintf(stderr, "fh-replicate: shipping snapshot %s (%" PRIu64 " bytes, %" PRIu64 " orders, complete to "
                        "sequence %" PRIu64 ") before the journal\n", snapshot, snap_len, smeta.orders,
                smeta.next_seq - 1);
    }
    uint64_t raddr = hello.a, rkey = hello.b, ring = hello.c, mask = ring - 1;
    if (ring < (4 * FRAME_MAX) || (ring & mask)) {
        fprintf(stderr, "fh-replicate: the standby's ring is %" PRIu64 " bytes: a power of two >= %zu expected\n", ring,
                4 * FRAME_MAX);
        { ret = 3; goto out; }
    }
    st->ring_bytes = ring;
    if (posix_memalign((void **)&stage, 4096, ring)) {
        fprintf(stderr, "fh-replicate: out of memory for a %" PRIu64 "-byte staging ring\n", ring);
        { ret = 2; goto out; }
    }
    memset(stage, 0, ring);
    if (fh_fab_reg(fp, stage, ring, FI_WRITE, &smr)) {
        fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
        { ret = 3; goto out; }
    }
    ops = calloc(o->max_outstanding, sizeof *ops);
    freeop = calloc(o->max_outstanding, sizeof *freeop);
    int nfree = (int)o->max_outstanding;
    if (!ops || !freeop) {
        fprintf(stderr, "fh-replicate: out of memory\n");
        ret = 2;
        goto out;
    }
    for (int i = 0; i < nfree; i++)
        freeop[i] = i, ops[i].slot = i;
    st->state = ST_STREAMING;
    streaming = 1;

    uint64_t wpos = 0, acked = 0, frames = 0, msgs = 0, bytes = 0, acked_frames = 0, acked_msgs = 0, overruns = 0;
    /* a run's bytes: --write-kb (0: one record a write), at most a quarter of the ring and what one message of
     * the provider carries (ep_attr->max_msg_size), less a frame (a run stops once it reaches the cap) */
    uint64_t wmax = (uint64_t)o->write_kb << 10, writes = 0, pmax = fp->info && fp->info->ep_attr ?
                    fp->info->ep_attr->max_msg_size : 0;
    if (wmax > ring / 4)
        wmax = ring / 4;
    if (pmax && wmax + FRAME_MAX > pmax)
        wmax = pmax > 2 * FRAME_MAX ? pmax - FRAME_MAX : 0;
    uint64_t pos = !strcmp(o->from, "head") ? fh_journal_head(&jr) : fh_journal_oldest(&jr);
    /* The journal has lapped before this primary joined: its first records are gone. Without a snapshot the
     * standby cannot have them: shipped as a hole first, so that its books are stale rather than wrong. */
    int lost_at_start = !strcmp(o->from, "oldest") && pos > 0 && !snapshot && !resume;
    if (lost_at_start) {
        overruns = 1;
        fprintf(stderr, "fh-replicate: the journal has lapped (its oldest record is at %" PRIu64 "): what came "
                        "before is lost, the standby's books stale (give --snapshot to start it whole)\n", pos);
    }
    uint64_t last_hb = 0, hb_ns = (uint64_t)o->heartbeat_ms * 1000000ull, alive_at = 0;
    int bye_sent = 0, writer_gone = 0, shipped_first = 0;
    uint64_t side_at = 0;
    while (!quit) {
        int busy = 0;
        wit_rekey(&wit); /* (a flag's load a loop unless SIGHUP came) */
        if (g) { /* a guard's shipping: SIGUSR2 and its listen address, as when idle (guard_side) */
            if (unguard) {
                fprintf(stderr, "fh-replicate: guard: SIGUSR2 (this host is standby now): the shipping stops\n");
                ret = 7;
                break;
            }
            uint64_t t = now_ns();
            if (t - side_at >= 1000000) {
                side_at = t;
                if (guard_side(o, fp, g) == 6) {
                    ret = 6;
                    break;
                }
            }
            if (g->joiner_gone) {
                fprintf(stderr, "fh-replicate: the standby closed the connection\n");
                ret = 3;
                break;
            }
        }
        fh_fab_op_t *done[64];
        /* A record waiting and an operation free: shipped before the completion queues are polled (with the tcp
         * provider each poll is a poll(2) for progress), at most 4 loops in a row so that acknowledgements and
         * completions still come in */
        int ship_first = nfree > 0 && shipped_first < 4 && fh_journal_head(&jr) != pos;
        shipped_first = ship_first ? shipped_first + 1 : 0;
        int nd = ship_first ? 0 : fh_fab_poll_tx(fp, done, 64);
        if (nd == -2 && bye_sent)
            break; /* the standby has everything and has gone: done */
        if (nd < 0) {
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            ret = 3;
            break;
        }
        for (int i = 0; i < nd; i++)
            freeop[nfree++] = done[i]->slot;
        busy |= nd > 0;
        fh_fab_rx_t rx[16];
        int nr = ship_first ? 0 : fh_fab_poll_rx(fp, rx, 16);
        if (nr == -2 && bye_sent)
            break;
        if (nr < 0) {
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            ret = 3;
            break;
        }
        int fenced = 0;
        for (int i = 0; i < nr; i++) {
            fh_repl_ctl_t m = { 0 };
            if (!rx[i].write && rx[i].len >= sizeof m)
                memcpy(&m, rx[i].msg, sizeof m);
            fh_fab_rx_done(fp, &rx[i]);
            if (m.type == CTL_ACK) {
                acked = m.a, acked_frames = m.b, acked_msgs = m.c;
                st->last_ack_ns = now_ns();
            } else if (m.type == CTL_REFUSED && !fenced) {
                fprintf(stderr, "fh-replicate: fenced: the standby refused epoch %u, it is at epoch %u (restart this "
                                "host as standby, or promote it with a newer epoch)\n", o->epoch, m.epoch);
                fenced = 1;
                st->fenced_by = m.epoch;
            }
        }
        if (fenced) {
            st->state = ST_FENCED;
            ret = 4;
            break;
        }
        busy |= nr > 0;
        /* ship what the journal holds, within the flow-control bounds: the records ready now, one frame each,
         * contiguous in the staging ring, go in one write (a run: up to --write-kb, the ring's end, the bounds); its
         * CQ data is the offset of its last frame / 8, and the standby walks the frames from where the previous
         * write ended to that one */
        while (nfree > 0) {
            uint64_t run = 0, nrun = 0; /* the run's first frame, and its frames so far */
            for (;;) {
                uint64_t off = wpos & mask, skip = ring - off < FRAME_MAX ? ring - off : 0;
                if (nrun && (skip || wpos - run >= wmax))
                    break; /* the run ends at the ring's end (a frame never straddles it) or at its cap */
                if (wpos + skip + FRAME_MAX - acked > ring)
                    break; /* the standby has not applied enough yet */
                uint8_t *w = stage + ((wpos + skip) & mask);
                fh_journal_rec_t *rec = (fh_journal_rec_t *)(w + sizeof(fh_repl_frame_t));
                uint64_t jp = pos;
                int r;
                if (lost_at_start) {
                    lost_at_start = 0;
                    memset(rec, 0, sizeof *rec);
                    rec->kind = FH_RR_OVERRUN, rec->size = sizeof *rec, rec->seq = 0, rec->arg = pos;
                    r = FH_JOURNAL_OK;
                } else if (!snap_end) { /* the snapshot's chunks, then its end, before any journal record */
                    uint64_t n = snap_len - snap_off < SNAP_CHUNK ? snap_len - snap_off : SNAP_CHUNK;
                    memset(rec, 0, sizeof *rec);
                    memcpy(rec->session, smeta.session, FH_JOURNAL_SESSION_LEN);
                    rec->pos = snap_len;
                    if (n) {
                        rec->kind = FH_RR_SNAP, rec->seq = snap_off, rec->arg = n;
                        memcpy(rec + 1, snap + snap_off, n);
                        snap_off += n;
                    } else {
                        rec->kind = FH_RR_SNAP_END, rec->seq = smeta.next_seq;
                        snap_end = 1;
                    }
                    rec->size = (uint32_t)((sizeof *rec + n + 7) & ~7ull);
                    r = FH_JOURNAL_OK;
                } else {
                    r = fh_journal_next(&jr, &pos, rec, (uint8_t *)(rec + 1));
                    if (r == FH_JOURNAL_OK && covered && held_by_standby(rec, hello.session, hello.d, &seen_session))
                        continue; /* the standby has it: not shipped again */
                    if (r == FH_JOURNAL_OK)
                        covered = 0;
                }
                if (r == FH_JOURNAL_NONE)
                    break;
                uint64_t seen = now_ns();
                if (r == FH_JOURNAL_OVERRUN && o->snapshot_dir && !pick_snapshot(o->snapshot_dir, &jr, picked, sizeof picked)
                    && !read_snapshot(picked, &snap, &snap_len, &smeta)) {
                    /* a standby the journal has lapped (it fell a ring behind): the newest snapshot the journal follows,
                     * then the journal from its oldest record (the standby skips what the snapshot holds) */
                    overruns++;
                    fprintf(stderr, "fh-replicate: overrun: the journal moved a whole ring past position %" PRIu64 " (the "
                                    "standby fell that far behind): shipping snapshot %s (complete to sequence %" PRIu64
                                    "), then the journal after it\n", jp, picked, smeta.next_seq - 1);
                    pos = fh_journal_oldest(&jr);
                    snap_off = 0, snap_end = 0;
                    continue;
                }
                if (r == FH_JOURNAL_OVERRUN) { /* shipped as a hole: the standby's books go stale */
                    overruns++;
                    st->state = ST_BEHIND;
                    fprintf(stderr, "fh-replicate: overrun: the journal moved a whole ring past position %" PRIu64
                                    "; going on from %" PRIu64 ", the standby's books stale\n", jp, pos);
                    memset(rec, 0, sizeof *rec);
                    rec->kind = FH_RR_OVERRUN, rec->size = sizeof *rec, rec->seq = jp, rec->arg = pos;
                }
                if (r == FH_JOURNAL_CORRUPT) {
                    fprintf(stderr, "fh-replicate: journal position %" PRIu64 " is not on a record\n", jp);
                    ret = 5;
                    goto out;
                }
                wpos += skip;
                if (!nrun++)
                    run = wpos;
                uint32_t size = (uint32_t)((sizeof(fh_repl_frame_t) + rec->size + 7) & ~7u);
                /* sent_ns holds the time it was read until the run is posted (below) */
                *(fh_repl_frame_t *)w = (fh_repl_frame_t){ FRAME_MAGIC, o->epoch, ++frames, wpos, seen, jp, size, 0 };
                wpos += size;
                bytes += size;
                if (rec->kind == FH_JR_MSGS)
                    msgs += rec->count;
            }
            if (!nrun)
                break;
            /* the run's frames stamped with the time it is posted (and how long each waited since it was read) */
            uint64_t sent = now_ns(), last = run;
            for (uint64_t p = run; p < wpos;) {
                fh_repl_frame_t *fr = (fh_repl_frame_t *)(stage + (p & mask));
                fr->seen_ago = sent - fr->sent_ns < UINT32_MAX ? (uint32_t)(sent - fr->sent_ns) : UINT32_MAX;
                fr->sent_ns = sent;
                last = p;
                p += fr->size;
            }
            int slot = freeop[--nfree];
            for (;;) {
                int wr = fh_fab_write(fp, stage + (run & mask), wpos - run, &smr, raddr + (run & mask), rkey,
                                      (last & mask) >> 3, &ops[slot]);
                if (!wr)
                    break;
                if (wr != -FI_EAGAIN) {
                    fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
                    ret = 3;
                    goto out;
                }
                int n2 = fh_fab_poll_tx(fp, done, 64);
                for (int i = 0; i < n2; i++)
                    freeop[nfree++] = done[i]->slot;
            }
            writes++;
            busy = 1;
        }
        uint64_t now = now_ns();
        /* The heartbeat says that this primary's data plane is alive: once its journal's writer is gone (killed,
         * crashed) and everything it wrote is shipped, no more (unless --exit-when-done: then BYE follows), so
         * that a standby with --promote-on-silence takes over after its failover timeout. */
        if (now - last_hb >= hb_ns && !writer_gone && !o->exit_when_done && pos == fh_journal_head(&jr) &&
            fh_journal_writer_alive(jpath) == 0) {
            writer_gone = 1;
            if (!given)
                wit.beating = 0; /* nor at the witness: the standby may promote */
            fprintf(stderr, "fh-replicate: the data plane writing %s is gone: no more heartbeats (a standby with "
                            "--promote-on-silence takes over after its failover timeout)\n", jpath);
        }
        if (now - last_hb >= hb_ns && !writer_gone) {
            fh_repl_ctl_t hb = { CTL_HEARTBEAT, o->epoch, fh_journal_head(&jr), now, frames, msgs, { 0 }, 0, 0 };
            int hr = fh_fab_send(fp, &hb, sizeof hb); /* no free slot (the link is stalled): skip this one */
            if (hr && hr != -FI_EAGAIN) {
                fprintf(stderr, "fh-replicate: heartbeat: %s\n", fh_fab_err());
                ret = 3;
                break;
            }
            last_hb = now;
            if (g ? g->joiner_gone : fh_fab_peer_gone(fp)) { /* (a guard's EQ: read by guard_side) */
                fprintf(stderr, "fh-replicate: the standby closed the connection\n");
                st->state = ST_FAILED;
                ret = 3;
                break;
            }
        }
        st->frames = frames, st->messages = msgs, st->bytes = bytes, st->acked_frames = acked_frames;
        st->acked_messages = acked_msgs, st->lag_messages = msgs - acked_msgs, st->overruns = overruns;
        st->journal_pos = pos, st->journal_head = fh_journal_head(&jr), st->updated_ns = now;
        /* (the writer's flock is asked at most every 1 ms: three syscalls, not in every idle poll) */
        if (!busy && pos == fh_journal_head(&jr) && acked == wpos && o->exit_when_done && now - alive_at >= 1000000 &&
            (alive_at = now, fh_journal_writer_alive(jpath) == 0)) {
            if (!bye_sent) {
                fh_repl_ctl_t bye = { CTL_BYE, o->epoch, frames, wpos, msgs, 0, { 0 }, 0, 0 };
                if (send_ctl(fp, &bye))
                    break;
                bye_sent = 1;
                continue; /* let the send complete */
            }
            break;
        }
        if (!busy)
            idle(o->spin);
    }
out:
    if (g && ret != 6 && g->state)
        side_drop(g);
    st->state = ret == 0 ? ST_DONE : st->state == ST_FENCED ? ST_FENCED : ST_FAILED;
    if (streaming)
        printf("{\"role\": \"primary\", \"provider\": \"%s\", \"epoch\": %u, \"frames\": %" PRIu64 ", \"messages\": %" PRIu64
           ", \"bytes\": %" PRIu64 ", \"acked_frames\": %" PRIu64 ", \"acked_messages\": %" PRIu64 ", \"overruns\": %" PRIu64
           ", \"writes\": %" PRIu64 ", \"write_max\": %" PRIu64 ", \"cpu_s\": %.3f, \"exit\": %d}\n",
           fp->provider, o->epoch, frames, msgs, bytes, acked_frames, acked_msgs, overruns, writes, wmax, cpu_s(), ret);
    fflush(stdout);
    if (streaming)
        usleep(20000); /* the BYE on its way before the connection closes */
    fh_fab_dereg(&smr);
    if (!given)
        fh_fab_close(fp);
    fh_journal_leave(&jr);
    free(stage);
    free(snap);
    free(ops);
    free(freeop);
    return ret;
}

static int primary(const opts_t *o)
{
    if (!o->probe && (wit_open(&wit, o) || wit_start_beats(&wit, o->epoch)))
        return 2;
    return primary_on(o, NULL, NULL, NULL);
}

/* ---- standby ------------------------------------------------------------------------------------------ */

/* A snapshot arriving in chunks (FH_RR_SNAP), loaded into the engine at its end (FH_RR_SNAP_END); then the
 * journal's records it already holds are skipped. */
typedef struct snap_state {
    char path[4200];
    int fd;
    int skipping;
    char session[FH_JOURNAL_SESSION_LEN];
    uint64_t next_seq, skipped, orders;
} snap_state_t;

static int standby_snapshot(const opts_t *o, fh_engine_t *e, fh_journal_t *j, const fh_journal_rec_t *rec,
                            const uint8_t *body, snap_state_t *ss)
{
    if (!ss->path[0]) /* without a segment: beside the journal, where the data plane following it loads it */
        snprintf(ss->path, sizeof ss->path, "%s.snapshot", o->segment ? o->segment : o->journal);
    if (rec->kind == FH_RR_SNAP) {
        if (rec->seq == 0) {
            if (ss->fd >= 0)
                close(ss->fd);
            ss->fd = open(ss->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
            if (ss->fd < 0) {
                fprintf(stderr, "fh-replicate: snapshot %s: %s\n", ss->path, strerror(errno));
                return -1;
            }
        }
        if (ss->fd < 0 || pwrite(ss->fd, body, rec->arg, (off_t)rec->seq) != (ssize_t)rec->arg) {
            fprintf(stderr, "fh-replicate: snapshot %s: cannot write a chunk at %" PRIu64 "\n", ss->path, rec->seq);
            return -1;
        }
        return 0;
    }
    if (ss->fd >= 0)
        close(ss->fd);
    ss->fd = -1;
    fh_snapshot_meta_t meta;
    if (fh_engine_snapshot_load(e, ss->path, &meta)) { /* e NULL: checked whole, not loaded */
        fprintf(stderr, "fh-replicate: the primary's snapshot: %s\n", fh_errmsg());
        return -1;
    }
    if (e)
        unlink(ss->path);
    else /* the data plane following the journal loads it (and removes it) when it reads this record */
        fh_journal_append_mark(j, FH_JR_SNAPSHOT, meta.session, meta.next_seq, meta.orders);
    memcpy(ss->session, meta.session, FH_JOURNAL_SESSION_LEN);
    ss->next_seq = meta.next_seq;
    ss->orders = meta.orders;
    ss->skipping = 1;
    fprintf(stderr, "fh-replicate: snapshot %s: %" PRIu64 " orders, %u books, complete to sequence %" PRIu64 "\n",
            e ? "loaded" : "received and journaled for the data plane", meta.orders, meta.books, meta.next_seq - 1);
    return 0;
}

/* --trace: one record's times (CLOCK_REALTIME ns), for bench/replication.sh's split of the lag. */
typedef struct trace {
    uint64_t seq, seen_ns, sent_ns, cq_ns, applied_ns;
} trace_t;

#define LAG_BUCKETS 1000000 /* 1 µs each, up to 1 s; beyond: the last */
static uint64_t lag_hist[LAG_BUCKETS];

static double lag_pct(uint64_t n, double q)
{
    if (!n)
        return 0;
    uint64_t want = (uint64_t)((double)n * q), c = 0;
    for (int i = 0; i < LAG_BUCKETS; i++) {
        c += lag_hist[i];
        if (c > want)
            return i;
    }
    return LAG_BUCKETS;
}

/* Every book stale, and the books created from now on (a hole), as the primary's feed did. e NULL: no engine. */
static void stale_all(fh_engine_t *e)
{
    if (!e)
        return;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
        fh_engine_set_status(e, (uint16_t)loc, FH_BOOK_STALE, NULL);
    fh_engine_set_new_book_status(e, FH_BOOK_STALE);
}

/* Promotion: where the journal stands (the session and the sequence after its last message), and what to do. */
typedef struct promo {
    fh_journal_t *j;
    fh_repl_status_t *st;
    uint32_t *epoch;
    char session[FH_JOURNAL_SESSION_LEN];
    uint64_t next_seq;
} promo_t;

static void promo_at(promo_t *p, const char *session, uint64_t next)
{
    if (memcmp(p->session, session, FH_JOURNAL_SESSION_LEN) || next > p->next_seq) {
        memcpy(p->session, session, FH_JOURNAL_SESSION_LEN);
        p->next_seq = next;
    }
}

/* A new epoch (the old primary's records refused from now on) and FH_JR_PROMOTED in the journal, after every
 * record applied: the data plane following it takes its own lines from there. why: "fh promote", or what adds to
 * the silence ("" without a witness). Returns 1. */
static int promote_now(promo_t *p, const char *why, uint32_t timeout_ms)
{
    uint32_t e = ++*p->epoch;
    p->st->epoch = e;
    p->st->state = ST_PROMOTED;
    fh_journal_append_mark(p->j, FH_JR_PROMOTED, p->session, p->next_seq, e);
    fh_journal_heartbeat(p->j);
    char sess[FH_JOURNAL_SESSION_LEN + 1] = { 0 };
    memcpy(sess, p->session, FH_JOURNAL_SESSION_LEN);
    if (!strcmp(why, "fh promote"))
        fprintf(stderr, "fh-replicate: promoted (fh promote): epoch %u; records of an older epoch are refused from now "
                        "on; the journal marked promoted at session %s sequence %" PRIu64 "\n", e, sess, p->next_seq);
    else
        fprintf(stderr, "fh-replicate: promoted (no heartbeat from the primary for %u ms%s): epoch %u; records of an "
                        "older epoch are refused from now on; the journal marked promoted at session %s sequence %"
                        PRIu64 "\n", timeout_ms, why, e, sess, p->next_seq);
    return 1;
}

/* The session and the sequence after the last message of a previous standby journal at path whose writer is
 * gone (nothing there, or promoted: *next 0). */
static void journal_resume_point(const char *path, char *session, uint64_t *next)
{
    fh_journal_reader_t jr;
    *next = 0;
    if (fh_journal_writer_alive(path) != 0 || fh_journal_join(&jr, path))
        return;
    static uint8_t buf[sizeof(fh_journal_rec_t) + FH_JOURNAL_MAX_BODY];
    fh_journal_rec_t *rec = (fh_journal_rec_t *)buf;
    uint64_t pos = fh_journal_oldest(&jr);
    for (int r; (r = fh_journal_next(&jr, &pos, rec, buf + sizeof *rec)) != FH_JOURNAL_NONE;) {
        if (r == FH_JOURNAL_CORRUPT)
            break;
        if (r != FH_JOURNAL_OK || !rec->seq)
            continue;
        if (rec->kind == FH_JR_PROMOTED) { /* a promoted host is a primary: nothing to resume */
            *next = 0;
            break;
        }
        uint64_t after = rec->kind == FH_JR_MSGS ? rec->seq + rec->count : rec->kind == FH_JR_LOST ?
                         rec->seq + rec->arg : rec->kind == FH_JR_MISSED ? rec->seq + 1 : 0;
        if (after && (memcmp(session, rec->session, FH_JOURNAL_SESSION_LEN) || after > *next)) {
            memcpy(session, rec->session, FH_JOURNAL_SESSION_LEN);
            *next = after;
        }
    }
    fh_journal_leave(&jr);
}

/* SIGUSR2 to a guard: a standby from now on, its status in the instance's file (the guard's own is removed). */
static void unguard_now(const opts_t *o, int *guard, fh_repl_status_t **st, promo_t *pm)
{
    static int moved;
    unguard = 0;
    if (!o->guard || moved)
        return;
    moved = 1;
    *guard = 0;
    if (o->status && o->guard) {
        opts_t d = *o;
        d.status = NULL;
        fh_repl_status_t *n = status_map(&d, "standby"), *old = *st;
        uint64_t magic = n->magic;
        memcpy(n, old, sizeof *n);
        n->magic = magic, n->pid = (uint64_t)getpid();
        if (n->state == ST_GUARDING)
            n->state = ST_CONNECTING;
        munmap(old, sizeof *old);
        unlink(o->status);
        *st = pm->st = wit.st = n;
    }
    fprintf(stderr, "fh-replicate: guard: this host is standby now: a standby like any other (status in "
                    "/dev/shm/fh-%s.repl)\n", o->name);
}

/* A guard (this host a primary) and a primary connecting at epoch theirs: refused (0), unless it beats this host
 * (1): then this host yields, said in one line, and is a standby from now on (the caller adopts the epoch). */
static int guard_yields(const opts_t *o, int *guard, uint32_t theirs, uint32_t mine, fh_repl_status_t *st)
{
    if (!peer_wins(theirs, mine, o->wins_ties))
        return 0;
    *guard = 0;
    st->state = ST_STREAMING;
    fprintf(stderr, "fh-replicate: guard: a primary at epoch %u ships to this host, a primary at epoch %u (%s): this "
                    "host yields and is a standby from now on (no split brain)\n", theirs, mine,
            theirs > mine ? "the newer epoch goes on" : "a tie: the peer wins it");
    return 1;
}

static int standby(const opts_t *o)
{
    char host[256], port[32];
    /* --listen: a primary connects to this standby; else --peer: this standby connects to the primary (a host that
     * has no listen address of its own; the primary's guard ships to it) */
    const char *where = o->listen ? o->listen : o->peer;
    int connecting = !o->listen;
    if (split_hostport(where, host, sizeof host, port, sizeof port, o->listen ? "--listen" : "--peer"))
        return 2;
    if (connecting && o->guard) {
        fprintf(stderr, "fh-replicate: --guard listens (--listen HOST:PORT): a guard does not connect\n");
        return 2;
    }
    if (wit_open(&wit, o))
        return 2;
    if (!o->journal) {
        fprintf(stderr, "fh-replicate: the standby needs --journal PATH (its own journal) and --segment PATH (its books), "
                        "or no --segment when its data plane follows the journal (fh-dataplane --standby PATH)\n");
        return 2;
    }
    standby_ctx_t c = { .ring_bytes = (uint64_t)o->ring_mb << 20 };
    if (c.ring_bytes < 4 * FRAME_MAX || (c.ring_bytes & (c.ring_bytes - 1))) {
        fprintf(stderr, "fh-replicate: --ring-mb %u: a power of two, at least 1 expected\n", o->ring_mb);
        return 2;
    }
    if (posix_memalign((void **)&c.ring, 4096, c.ring_bytes)) {
        fprintf(stderr, "fh-replicate: out of memory for a %u MiB ring\n", o->ring_mb);
        return 2;
    }
    memset(c.ring, 0, c.ring_bytes);
    fh_seg_t *seg = NULL;
    trace_t *trace = NULL;
    fh_engine_t *e = NULL; /* none without --segment: the data plane applies (fh-dataplane --standby) */
    if (o->segment) {
        fh_seg_cfg_t sc = { .path = o->segment, .name = o->name, .max_levels = o->max_levels,
                            .event_capacity = o->events, .depth = o->depth, .gid = -1,
                            .ladder_books = FH_SEG_LADDER_BOOKS };
        seg = fh_seg_create(&sc);
        if (!seg) {
            fprintf(stderr, "fh-replicate: segment: %s\n", fh_errmsg());
            return 2;
        }
        fh_engine_cfg_t ec = { FH_MAX_LOCATE, o->max_orders, o->max_levels };
        e = fh_engine_create_on(&ec, seg);
        if (!e) {
            fprintf(stderr, "fh-replicate: engine: %s\n", fh_errmsg());
            fh_seg_close(seg, 1);
            return 2;
        }
    }
    /* A restart (fh run supervising it): where the previous journal at this path stands, so that the primary
     * ships only what follows (the data plane following it goes on with the new journal, skipping nothing). */
    char rs_session[FH_JOURNAL_SESSION_LEN] = { 0 };
    uint64_t rs_next = 0;
    journal_resume_point(o->journal, rs_session, &rs_next);
    fh_journal_t *j = fh_journal_create(&(fh_journal_cfg_t){ o->journal, o->name, (uint64_t)o->journal_mb << 20, -1 });
    if (!j) {
        fprintf(stderr, "fh-replicate: journal: %s\n", fh_errmsg());
        if (e)
            fh_engine_destroy(e);
        if (seg)
            fh_seg_close(seg, 1);
        return 2;
    }
    fh_repl_status_t *st = status_map(o, "standby");
    st->ring_bytes = c.ring_bytes;
    wit.st = st;
    fh_fab_t f;
    memset(&f, 0, sizeof f);
    int ret = 0;
    if (!connecting && fh_fab_listen(&f, o->provider, host, port)) {
        fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
        ret = 3;
        goto done;
    }
    /* --guard: this host is a primary (fh run runs this beside its data plane): HELLO says so, a primary that does
     * not beat it is refused (it stops fenced), one that does (a newer epoch; a tie without --wins-ties) makes this
     * host yield: from then on this is a standby like any other (fh run restarts the data plane as standby). No
     * promotion while guarding: this host is the primary. */
    int guard = o->guard;
    st->state = guard ? ST_GUARDING : ST_CONNECTING; /* listening: a primary may connect now */
    snprintf(st->provider, sizeof st->provider, "%s", f.provider);
    snprintf(st->fabric, sizeof st->fabric, "%s", f.fabric_name);
    if (connecting)
        fprintf(stderr, "fh-replicate: standby connecting to the primary at %s (provider %s), ring %u MiB, epoch %u\n",
                where, o->provider, o->ring_mb, o->epoch);
    else
        fprintf(stderr, "fh-replicate: %s listening on %s (provider %s, fabric %s), ring %u MiB, epoch %u\n",
                guard ? "guard of a primary" : "standby", o->listen, f.provider, f.fabric_name, o->ring_mb, o->epoch);
    uint32_t epoch = o->epoch;
    uint64_t lpos = 0, frames = 0, msgs = 0, refused = 0, unacked = 0, lag_n = 0, holes = 0, writes = 0, ack_lpos = 0;
    uint64_t last_hb = now_ns(), hb_timeout = (uint64_t)o->failover_timeout_ms * 1000000ull, primary_msgs = 0;
    int bye = 0;
    snap_state_t snapst = { .fd = -1 };
    uint64_t first_ns = 0, last_ns = 0; /* the first and last record applied */
    uint64_t conn_at = 0, silent_conns = 0; /* this connection's start; connections closed for saying nothing */
    uint64_t ack_at = 0, alive_at = 0;    /* the last idle acknowledgement, the last signs of life */
    trace = o->trace ? calloc(o->trace_max, sizeof *trace) : NULL; /* before the loop: none in it */
    uint64_t ntrace = 0;
    if (o->trace && !trace) {
        fprintf(stderr, "fh-replicate: out of memory for --trace of %u records: a smaller --trace-max\n", o->trace_max);
        ret = 2;
        goto done;
    }
    uint64_t last_frame = 0;
    int promoted = 0, gone = 0, had_primary = 0, heard = 0; /* heard: a heartbeat or a record of a primary */
    int conn_heard = 0; /* ... on this connection */
    int joined = 0;     /* a standby's HELLO (HELLO_JOIN) on this connection: a guard ships to it */
    fh_fab_rx_t pend[16]; /* a guard that yielded while shipping: what the primary sent on its connection already */
    int npend = 0, busy = 0; /* busy: a connecting standby refused by a guard shipping to another (REFUSED_BUSY) */
    fh_repl_ctl_t join = { 0 };
    promo_t pm = { .j = j, .st = st, .epoch = &epoch };
    char why[320]; /* a promotion on silence: its cause (the witnesses' answers too) */
    if (rs_next) {
        char sess[FH_JOURNAL_SESSION_LEN + 1] = { 0 };
        memcpy(sess, rs_session, FH_JOURNAL_SESSION_LEN);
        promo_at(&pm, rs_session, rs_next);
        fprintf(stderr, "fh-replicate: the previous journal at %s ended at session %s sequence %" PRIu64 ": a primary "
                        "ships what follows\n", o->journal, sess, rs_next - 1);
    }
    /* One primary after another, without a restart: the same primary's fh-replicate restarted, or a new primary
     * (the other host, promoted). While none is connected: promotion (fh promote, or the failover timeout since
     * the last heartbeat of the one before), and the journal's heartbeat. (A goto back here from the end of the
     * streaming loop, rather than a loop around it, keeps that loop as it is.) */
next_primary:
    for (uint64_t k = 0;; k++) {
        wit_rekey(&wit);
        if (unguard)
            unguard_now(o, &guard, &st, &pm);
        if (!promoted && !guard && (promote || (heard && o->promote_on_silence && now_ns() - last_hb > hb_timeout &&
                                                wit_promote_ok(&wit, st, epoch, last_hb, why, sizeof why))))
            promoted = promote_now(&pm, promote ? "fh promote" : why, o->failover_timeout_ms);
        if (!guard)
            wit_standby_beat(&wit, now_ns(), promoted, epoch);
        if (quit || (had_primary && o->exit_when_done))
            goto finished;
        int ar;
        if (!connecting)
            ar = fh_fab_accept(&f, 1, register_ring, &c); /* 1 ms: the failover time's granularity here */
        else if (fh_fab_connect(&f, o->provider, host, port, 1000)) { /* nothing there (yet): again in 100 ms */
            if (!(k % 50) || !strstr(fh_fab_err(), "refused")) /* said every 5 s */
                fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            fh_fab_close(&f);
            memset(&f, 0, sizeof f);
            nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
            ar = 1;
        } else if (register_ring(&f, &c)) {
            ar = -1;
        } else {
            ar = 0;
            snprintf(st->provider, sizeof st->provider, "%s", f.provider);
            snprintf(st->fabric, sizeof st->fabric, "%s", f.fabric_name);
        }
        if (!ar)
            break;
        if (ar < 0 && connecting) {
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            fh_fab_dereg(&c.rmr);
            fh_fab_close(&f);
            memset(&f, 0, sizeof f);
            nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
        } else if (ar < 0) { /* a connection request that failed (not a primary of ours?): said, and the next awaited */
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            fh_fab_dereg(&c.rmr);
            fh_fab_hangup(&f);
            nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
        }
        if (e && !(k & 127))
            fh_engine_publish_stats(e);
        if (!(k & 127))
            fh_journal_heartbeat(j);
    }
    /* HELLO: the ring, the epoch, and where this standby's journal stands, so that a primary ships what follows
     * (the records before it are skipped, here too: a record across it gives its tail only) */
    fh_repl_ctl_t hello = { CTL_HELLO, epoch, c.rmr.addr, c.rmr.key, c.ring_bytes, pm.next_seq, { 0 },
                            (guard || promoted ? HELLO_PRIMARY : 0) | (connecting ? HELLO_JOIN : 0), 0 };
    memcpy(hello.session, pm.session, FH_JOURNAL_SESSION_LEN);
    if (send_ctl(&f, &hello)) {
        fprintf(stderr, "fh-replicate: hello: %s\n", fh_fab_err());
        ret = 3;
        goto done;
    }
    if (heard) {
        char sess[FH_JOURNAL_SESSION_LEN + 1] = { 0 };
        memcpy(sess, pm.session, FH_JOURNAL_SESSION_LEN);
        fprintf(stderr, "fh-replicate: a primary connected again (connection %" PRIu64 "): resuming after session "
                        "%s sequence %" PRIu64 "%s\n", st->connections + 1, sess, pm.next_seq ? pm.next_seq - 1 : 0,
                promoted ? "; promoted: its records are refused" : "");
    }
    if (pm.next_seq) { /* what the journal holds already: skipped, as after a snapshot */
        memcpy(snapst.session, pm.session, FH_JOURNAL_SESSION_LEN);
        snapst.next_seq = pm.next_seq;
        snapst.skipping = 1;
    }
    /* (the failover clock is not reset by a connection, only by a heartbeat, once a primary was heard: a connection
     * that says nothing, fh run's --probe, does not delay a failover) */
    had_primary = 1, gone = 0, bye = 0, lpos = 0, last_frame = 0, unacked = 0, conn_heard = 0, ack_lpos = 0;
    if (!heard)
        last_hb = now_ns();
    st->connections++;
    conn_at = now_ns();
    st->state = guard ? ST_GUARDING : promoted ? ST_PROMOTED : ST_STREAMING;
    while (!quit && !bye) {
        wit_rekey(&wit);
        if (unguard)
            unguard_now(o, &guard, &st, &pm);
        /* on silence only once a primary was heard (as between connections): a connection that never carried a
         * heartbeat or a record (a joined standby's to a guard that stopped shipping, a probe) is no primary gone */
        if (!promoted && !guard && (promote || (heard && o->promote_on_silence && now_ns() - last_hb > hb_timeout &&
                                                wit_promote_ok(&wit, st, epoch, last_hb, why, sizeof why))))
            promoted = promote_now(&pm, promote ? "fh promote" : why, o->failover_timeout_ms);
        if (connecting && !conn_heard && !promoted && now_ns() - conn_at > hb_timeout) {
            /* a standby that joined by connecting, told nothing (no heartbeat, no record) for the failover timeout:
             * the guard's end may have closed without this side seeing it, or its shipping not begun (its data
             * plane's journal not there yet): closed, and connected again (a silent connection never promotes) */
            if (!silent_conns++ || !(silent_conns % 20))
                fprintf(stderr, "fh-replicate: the primary at %s said nothing on this connection for %u ms: connecting "
                                "again (%" PRIu64 " such connection%s)\n", where, o->failover_timeout_ms, silent_conns,
                        silent_conns > 1 ? "s" : "");
            gone = 1;
            break;
        }
        fh_fab_rx_t rx[16];
        int nr = npend ? npend : fh_fab_poll_rx(&f, rx, 16); /* (pend: a yield's first completions) */
        if (npend)
            memcpy(rx, pend, sizeof rx), npend = 0;
        if (nr == -2) { /* the primary is gone (fenced, stopped, or died) */
            if (conn_heard)
                fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            else
                fprintf(stderr, "fh-replicate: a connection closed with nothing accepted from it (a probe asking what "
                                "listens here, or a primary refused, or stopped at this host's HELLO)\n");
            gone = 1;
            break;
        }
        if (nr < 0) {
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            ret = 3;
            break;
        }
        uint64_t now = now_ns();
        for (int i = 0; i < nr; i++) {
            if (!rx[i].write) {
                fh_repl_ctl_t m = { 0 };
                if (rx[i].len >= sizeof m)
                    memcpy(&m, rx[i].msg, sizeof m);
                fh_fab_rx_done(&f, &rx[i]);
                if (m.type == CTL_HEARTBEAT) {
                    if (guard)
                        guard_yields(o, &guard, m.epoch, epoch, st);
                    last_hb = now;
                    st->last_heartbeat_ns = now;
                    primary_msgs = m.d;
                    st->journal_head = m.a;
                    if (m.epoch < epoch || promoted || guard) { /* fenced even with nothing to ship */
                        fh_repl_ctl_t no = { CTL_REFUSED, epoch, m.epoch, 0, 0, 0, { 0 }, 0, 0 };
                        send_ctl(&f, &no);
                    } else if (heard = conn_heard = 1, m.epoch > epoch) { /* a primary heard: the failover clock runs */
                        fprintf(stderr, "fh-replicate: the primary's epoch %u is newer than %u: adopted\n", m.epoch,
                                epoch);
                        epoch = m.epoch;
                        st->epoch = epoch;
                    }
                } else if (m.type == CTL_BYE) {
                    bye = o->exit_when_done;
                    primary_msgs = m.c;
                } else if (m.type == CTL_REFUSED && connecting && (m.flags & REFUSED_YIELDED)) {
                    /* the guard that shipped to this standby yielded to a newer primary on another host, which this
                     * standby cannot reach (its peer is that guard's host): not a primary gone, so no promotion on
                     * the silence that follows until a primary is heard again (heard 0); fh promote still promotes */
                    if (m.a)
                        fprintf(stderr, "fh-replicate: the primary at %s yields to a primary at epoch %" PRIu64 " that "
                                        "connected to it: this standby keeps its books and waits, connecting again; "
                                        "it does not promote on silence until a primary ships to it again (fh "
                                        "promote still promotes)\n", where, m.a);
                    else /* its host demoted (SIGUSR2 from fh run): a primary of a newer epoch elsewhere */
                        fprintf(stderr, "fh-replicate: the primary at %s is a standby now (a primary beat it "
                                        "elsewhere): this standby keeps its books and waits, connecting again; it "
                                        "does not promote on silence until a primary ships to it again (fh promote "
                                        "still promotes)\n", where);
                    if (m.a > epoch && m.a <= UINT32_MAX)
                        epoch = (uint32_t)m.a, st->epoch = epoch;
                    heard = 0;
                    gone = 1;
                } else if (m.type == CTL_REFUSED && connecting && (m.flags & REFUSED_BUSY)) {
                    if (!busy++)
                        fprintf(stderr, "fh-replicate: the primary's guard at %s ships to another standby (one at a "
                                        "time): connecting again every 200 ms\n", where);
                    gone = 1;
                } else if (m.type == CTL_HELLO && (m.flags & HELLO_JOIN) && !joined) {
                    join = m, joined = 1; /* a standby connected to this host: shipped to below, if a guard */
                }
                continue;
            }
            /* one write: the frames from where the previous write ended (a lap's tail too short for a frame was
             * skipped, as the primary did) to the one the CQ data names; each checked, and applied in order */
            uint64_t last_off = (rx[i].data << 3) & (c.ring_bytes - 1);
            fh_fab_rx_done(&f, &rx[i]);
            writes++;
            int told = 0; /* REFUSED sent for this write (once: the primary stops at the first) */
            for (int end = 0; !end;) {
                uint64_t at = lpos, off = at & (c.ring_bytes - 1);
                if (c.ring_bytes - off < FRAME_MAX)
                    at += c.ring_bytes - off, off = 0;
                end = off == last_off;
                const fh_repl_frame_t *fr = (const fh_repl_frame_t *)(c.ring + off);
                const fh_journal_rec_t *rec = (const fh_journal_rec_t *)(fr + 1);
                if (fr->magic != FRAME_MAGIC || off > last_off || off + fr->size > c.ring_bytes || fr->lpos != at ||
                    fr->size < sizeof *fr + sizeof *rec || rec->size + sizeof *fr > fr->size ||
                    (!end && off + fr->size > last_off)) {
                    fprintf(stderr, "fh-replicate: a malformed frame at ring offset %" PRIu64 " (magic %08x, size %u, "
                                    "position %" PRIu64 ", expected %" PRIu64 ", the write's last frame at %" PRIu64
                                    "): stopping; is the primary an fh-replicate of this version, over a provider that keeps "
                                    "the order of writes (FI_ORDER_WAW)?\n", off, fr->magic,
                            fr->size, fr->lpos, at, last_off);
                    ret = 5;
                    goto done;
                }
                lpos = fr->lpos + fr->size; /* consumed (each way below applies it, skips it or refuses it) */
                if (fr->frame != last_frame + 1) { /* writes completed out of order: not a provider this can use */
                    fprintf(stderr, "fh-replicate: frame %" PRIu64 " arrived after frame %" PRIu64 ": provider %s does "
                                    "not keep the order of writes (FI_ORDER_WAW); stopping\n", fr->frame, last_frame,
                            f.provider);
                    ret = 5;
                    goto done;
                }
                last_frame = fr->frame;
                if (guard)
                    guard_yields(o, &guard, fr->epoch, epoch, st);
                if (fr->epoch < epoch || promoted || guard) { /* promoted, or guarding: this host is the primary */
                    refused++;
                    st->refused_epoch = refused;
                    fh_repl_ctl_t no = { CTL_REFUSED, epoch, fr->epoch, fr->frame, 0, 0, { 0 }, 0, 0 };
                    if (!told++)
                        send_ctl(&f, &no);
                    lpos = fr->lpos + fr->size; /* consumed, not applied */
                    continue;
                }
                heard = conn_heard = 1;
                if (fr->epoch > epoch) {
                    fprintf(stderr, "fh-replicate: the primary's epoch %u is newer than %u: adopted\n", fr->epoch, epoch);
                    epoch = fr->epoch;
                    st->epoch = epoch;
                }
                const uint8_t *body = (const uint8_t *)(rec + 1);
                if (rec->kind == FH_RR_SNAP || rec->kind == FH_RR_SNAP_END) {
                    if (standby_snapshot(o, e, j, rec, body, &snapst)) {
                        ret = 5;
                        goto done;
                    }
                    frames++;
                    lpos = fr->lpos + fr->size;
                    unacked++;
                    continue;
                }
                if (snapst.skipping) { /* after a snapshot: the journal's records it already holds are skipped */
                    if (rec->kind != FH_JR_MSGS || memcmp(rec->session, snapst.session, FH_JOURNAL_SESSION_LEN) ||
                        rec->seq + rec->count <= snapst.next_seq) {
                        snapst.skipped++;
                        frames++;
                        lpos = fr->lpos + fr->size;
                        unacked++;
                        continue;
                    }
                    snapst.skipping = 0;
                    if (rec->seq > snapst.next_seq) { /* the journal no longer holds what follows the snapshot */
                        fprintf(stderr, "fh-replicate: the primary's journal starts at sequence %" PRIu64 ", after the "
                                        "snapshot's %" PRIu64 ": messages lost, books stale\n", rec->seq, snapst.next_seq);
                        holes++;
                        stale_all(e);
                    } else if (rec->seq < snapst.next_seq) { /* a record across the snapshot's end: its tail only */
                        const uint8_t *m[1024];
                        uint16_t ml[1024];
                        uint32_t nb = fh_journal_blocks(rec, body, m, ml, 1024), k = (uint32_t)(snapst.next_seq - rec->seq);
                        if (k < nb && nb <= 1024) {
                            const uint8_t *from = m[k] - 2;
                            size_t blen = (size_t)(body + rec->arg - from);
                            fh_journal_append_msgs(j, rec->session, snapst.next_seq, (uint16_t)(nb - k), from, blen);
                            if (e)
                                fh_engine_apply_blocks(e, from, blen);
                            promo_at(&pm, rec->session, snapst.next_seq + (nb - k));
                            msgs += nb - k;
                        }
                        frames++;
                        lpos = fr->lpos + fr->size;
                        unacked++;
                        continue;
                    }
                }
                switch (rec->kind) {
                case FH_JR_MSGS:
                    fh_journal_append_msgs(j, rec->session, rec->seq, rec->count, body, rec->arg);
                    if (e)
                        fh_engine_apply_blocks(e, body, rec->arg);
                    msgs += rec->count;
                    if (rec->seq)
                        promo_at(&pm, rec->session, rec->seq + rec->count);
                    break;
                case FH_RR_OVERRUN:
                    holes++;
                    stale_all(e);
                    break; /* not journaled: the standby's followers see the sequences jump themselves */
                case FH_JR_LOST:
                case FH_JR_MISSED:
                    /* as the primary's feed did when it gave the hole up (mold.c mark_stale): every book stale, and
                     * the books created from now on, with the same events */
                    holes++;
                    stale_all(e);
                    promo_at(&pm, rec->session, rec->seq + (rec->kind == FH_JR_LOST ? rec->arg : 1));
                    /* fallthrough */
                default:
                    if (rec->kind == FH_JR_HEARTBEAT)
                        promo_at(&pm, rec->session, rec->seq);
                    fh_journal_append_mark(j, rec->kind, rec->session, rec->seq, rec->arg);
                    break;
                }
                frames++;
                uint64_t applied = now_ns(); /* the lag runs to here: the record in the journal and the books */
                if (!first_ns)
                    first_ns = applied;
                last_ns = applied;
                lpos = fr->lpos + fr->size;
                uint64_t lag = applied > fr->sent_ns ? (applied - fr->sent_ns) / 1000 : 0;
                lag_hist[lag < LAG_BUCKETS ? lag : LAG_BUCKETS - 1]++;
                lag_n++;
                st->lag_ns = applied - fr->sent_ns;
                if (trace && ntrace < o->trace_max) /* the primary's read, its post, the completion seen, applied */
                    trace[ntrace++] = (trace_t){ rec->seq, fr->sent_ns - fr->seen_ago, fr->sent_ns, now, applied };
                unacked++;
            }
            if (unacked >= 64 || lpos - ack_lpos >= c.ring_bytes / 4) { /* the primary's bound: a ring unacknowledged */
                fh_repl_ctl_t ack = { CTL_ACK, epoch, lpos, frames, msgs, 0, { 0 }, 0, 0 };
                if (!send_ctl(&f, &ack))
                    unacked = 0, ack_lpos = lpos;
            }
        }
        if (gone) { /* refused as a second standby (REFUSED_BUSY): this connection closed, the next in 200 ms */
            nanosleep(&(struct timespec){ 0, 200000000 }, NULL);
            break;
        }
        if (joined) {
            /* A standby with no listen address of its own connected to this host and asks for the journal: a guard
             * (this host the primary) ships the data plane's (--ship-journal) over this connection, as a primary
             * would, until it closes; anything else says why not (that standby waits, and tries again) */
            joined = 0;
            static uint64_t left_waiting; /* the joined standby left while the journal was awaited: said 1 in 20 */
            if (guard && o->ship_journal && !promoted) {
                if (!(left_waiting % 20))
                    fprintf(stderr, "fh-replicate: guard: a standby connected to this primary (it has no listen "
                                    "address): shipping %s to it at epoch %u\n", o->ship_journal, epoch);
                /* while it ships, its listen address answered as when idle (guard_side); side's storage static: after
                 * a yield the receives posted on it stay named by it (no second yield: no guard after one) */
                static fh_fab_t side;
                guard_link_t g = { .side = &side, .c2 = { c.ring, c.ring_bytes, { 0 } },
                                   .hello = { CTL_HELLO, epoch, 0, 0, c.ring_bytes, pm.next_seq, { 0 }, HELLO_PRIMARY, 0 } };
                memcpy(g.hello.session, pm.session, FH_JOURNAL_SESSION_LEN);
                int pr = primary_on(o, &f, &join, &g);
                /* 6: a primary beating this host connected meanwhile; 7: SIGUSR2, fh run's word that this host is
                 * standby now (a primary beat it elsewhere). Either way the joined standby's primary has moved on to
                 * a host it cannot reach: told so before its connection closes, it keeps its books and waits rather
                 * than take the silence that follows for a primary gone (it would promote: a second primary) */
                if (pr == 6 || pr == 7)
                    tell_moved_on(&f, epoch, pr == 6 ? g.theirs : 0);
                if (pr == 6) {
                    /* that primary's connection is this standby's now, what it sent already applied first; the
                     * joined standby's closed (it connects again) */
                    fh_fab_dereg(&c.rmr);
                    fh_fab_adopt(&f, g.side);
                    c.rmr = g.c2.rmr;
                    guard_yields(o, &guard, g.theirs, epoch, st);
                    memcpy(pend, g.pend, sizeof pend);
                    npend = g.npend;
                    /* the failover clock from now: that primary has just spoken (pend); the last heartbeat before was
                     * another's, or none (a guard hears none), and would promote this host at once on silence */
                    last_hb = now_ns();
                    lpos = 0, last_frame = 0, unacked = 0, conn_heard = 0, ack_lpos = 0, joined = 0;
                    if (pm.next_seq) {
                        memcpy(snapst.session, pm.session, FH_JOURNAL_SESSION_LEN);
                        snapst.next_seq = pm.next_seq;
                        snapst.skipping = 1;
                    }
                    st->connections++;
                    continue;
                }
                if (pr != 8) {
                    fprintf(stderr, "fh-replicate: guard: the standby that connected is gone (%d%s): listening again\n",
                            pr, pr == 7 ? ": SIGUSR2" : "");
                    left_waiting = 0;
                } else if (!(left_waiting++ % 20)) /* one line, then every 20th (it connects again each timeout) */
                    fprintf(stderr, "fh-replicate: guard: the standby that connected closed its connection while this "
                                    "guard waited for the data plane's journal %s (%" PRIu64 " times): listening "
                                    "again\n", o->ship_journal, left_waiting);
                st->state = ST_GUARDING;
                gone = 1;
                break;
            }
            fprintf(stderr, "fh-replicate: a standby connected to this host, which %s: nothing shipped to it\n",
                    !guard ? "is not a primary's guard" : promoted ? "was promoted (fh run ships from a guard)"
                                                              : "has no --ship-journal");
        }
        if (nr == 0) {
            /* Idle: acknowledge what is applied (at most every 100 µs: not a send per record when the records
             * come one at a time), and the signs of life for readers and followers (every 1 ms) */
            if (unacked && now - ack_at >= 100000) {
                fh_repl_ctl_t ack = { CTL_ACK, epoch, lpos, frames, msgs, 0, { 0 }, 0, 0 };
                if (!send_ctl(&f, &ack))
                    unacked = 0, ack_at = now, ack_lpos = lpos;
            }
            if (now - alive_at >= 1000000) {
                if (e)
                    fh_engine_publish_stats(e);
                fh_journal_heartbeat(j);
                alive_at = now;
            }
            if (!guard)
                wit_standby_beat(&wit, now, promoted, epoch);
            if (now - last_hb > hb_timeout) {
                if (!promoted && !guard)
                    st->state = ST_PEER_SILENT;
                if (fh_fab_peer_gone(&f)) {
                    fprintf(stderr, "fh-replicate: the primary closed the connection\n");
                    gone = 1;
                    break;
                }
            }
            idle(o->spin);
        } else if (st->state == ST_PEER_SILENT && !promoted) {
            st->state = ST_STREAMING;
        }
        st->frames = frames, st->messages = msgs, st->acked_frames = frames, st->acked_messages = msgs;
        st->lag_messages = primary_msgs > msgs ? primary_msgs - msgs : 0;
        st->last_ack_ns = now, st->journal_pos = lpos, st->updated_ns = now;
    }
    if (e)
        fh_engine_publish_stats(e);
    /* The primary gone: the segment carries on for local readers until stopped (or --exit-when-done); fh promote
     * (or, with --promote-on-silence, the failover timeout since its last heartbeat) promotes, fencing the old
     * primary with a new epoch should it return, and hands the lines to the data plane following the journal. */
    st->state = guard ? ST_GUARDING : promoted ? ST_PROMOTED : ST_PEER_SILENT;
    if (gone && !ret && !quit && !o->exit_when_done) { /* the connection closed: await the next primary */
        fh_fab_dereg(&c.rmr);
        if (connecting) {
            fh_fab_close(&f);
            memset(&f, 0, sizeof f);
        } else
            fh_fab_hangup(&f);
        goto next_primary;
    }
finished:
    st->state = ret ? ST_FAILED : promoted ? ST_PROMOTED : gone ? ST_PEER_SILENT : ST_DONE;
    printf("{\"role\": \"standby\", \"provider\": \"%s\", \"epoch\": %u, \"frames\": %" PRIu64 ", \"messages\": %" PRIu64
           ", \"refused_epoch\": %" PRIu64 ", \"holes\": %" PRIu64 ", \"snapshot_orders\": %" PRIu64
           ", \"skipped_after_snapshot\": %" PRIu64 ", \"writes\": %" PRIu64 ", \"lag_us_p50\": %.0f, \"lag_us_p99\": %.0f, "
           "\"lag_us_p999\": %.0f, \"lag_us_max\": %.0f, \"cpu_s\": %.3f, \"apply_s\": %.3f, \"exit\": %d}\n",
           f.provider, epoch, frames, msgs, refused, holes, snapst.orders, snapst.skipped, writes, lag_pct(lag_n, 0.5), lag_pct(lag_n, 0.99),
           lag_pct(lag_n, 0.999), lag_pct(lag_n, 1.0 - 1e-12), cpu_s(), (double)(last_ns - first_ns) / 1e9, ret);
    fflush(stdout);
    if (trace) {
        FILE *tf = fopen(o->trace, "wb");
        int bad = !tf || fwrite(trace, sizeof *trace, ntrace, tf) != ntrace;
        if ((tf && fclose(tf)) || bad)
            fprintf(stderr, "fh-replicate: --trace %s: cannot write it: %s\n", o->trace, strerror(errno));
    }
done:
    free(trace);
    fh_fab_dereg(&c.rmr);
    fh_fab_close(&f);
    fh_journal_close(j, 0);
    if (e)
        fh_engine_destroy(e);
    if (seg)
        fh_seg_close(seg, 0); /* the books stay for readers (and tests) until the next writer replaces them */
    free(c.ring);
    return ret;
}

static int parse_u32(const char *s, uint32_t *out, const char *opt)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || !*s || v > 0xffffffffu) {
        fprintf(stderr, "fh-replicate: %s %s: a whole number expected\n", opt, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fh-replicate --role primary --journal PATH --peer HOST:PORT [--provider auto|verbs|tcp] [--epoch N]\n"
            "                    [--max-outstanding N] [--heartbeat-ms N] [--from oldest|head] [--exit-when-done]\n"
            "                    [--write-kb N (the records ready, in one write up to N KiB; default 256, 0: one a write)]\n"
            "                    [--snapshot FILE (a late standby: this fh_engine_snapshot file first)]\n"
            "       fh-replicate --role standby --listen HOST:PORT --journal PATH --segment PATH [--ring-mb N]\n"
            "                    [--journal-mb N] [--max-orders N] [--max-levels N] [--events N] [--depth N] [--exit-when-done]\n"
            "                    [--failover-timeout-ms N (no heartbeat this long: the primary is silent)]\n"
            "                    [--promote-on-silence (then promote: the data plane following --journal takes the lines)]\n"
            "                    (no --segment: journal only, for fh-dataplane --standby JOURNAL)\n"
            "       fh-replicate --list-devices [--provider auto|verbs|tcp]\n"
            "       two primaries (fh run): primary [--probe (what listens at --peer: a JSON line, nothing shipped)]\n"
            "                    [--snapshot-dir DIR (the newest *.snap the journal follows, for a lapped standby)];\n"
            "                    standby [--guard (this host is primary: refuse, or yield to a primary beating it)]\n"
            "                    [--ship-journal PATH (a guard: ship this journal to a standby that connects)];\n"
            "                    standby --peer HOST:PORT instead of --listen: it connects to the primary's guard\n"
            "                    both [--wins-ties (this host goes on when both primaries are at the same epoch)]\n"
            "       common: [--name NAME] [--status PATH] [--idle spin|backoff] [--connect-timeout-ms N] [--core N]\n"
            "               [--witness HOST:PORT [--pair ID] (fh witness: the primary beats to it; the standby asks it\n"
            "                before promoting on silence, and promotes only if it has not heard the primary either;\n"
            "                --witness again for each witness of a quorum, up to 5: a majority must say so)\n"
            "               [--witness-key-file PATH (a shared secret, 32+ bytes, mode 600: HMAC-SHA256 on every\n"
            "                witness datagram; fh witness --key-file the same)]]\n"
            "       standby, measuring: [--trace PATH (each record's times, bench/replication.sh)] [--trace-max N]\n");
}

int main(int argc, char **argv)
{
    opts_t o = { .provider = "auto", .name = "fh", .from = "oldest", .epoch = 1, .ring_mb = 16, .journal_mb = 64,
                 .max_outstanding = 64, .heartbeat_ms = 100, .failover_timeout_ms = 1000, .max_orders = 8u << 20, .max_levels = 4u << 20,
                 .events = 1u << 16, .depth = 10, .connect_timeout_ms = 5000, .core = -1, .trace_max = 1u << 20,
                 .write_kb = 256 };
    static const struct option lo[] = {
        { "role", 1, 0, 'r' }, { "provider", 1, 0, 'p' }, { "journal", 1, 0, 'j' }, { "peer", 1, 0, 'P' },
        { "listen", 1, 0, 'l' }, { "segment", 1, 0, 's' }, { "status", 1, 0, 'S' }, { "name", 1, 0, 'n' },
        { "from", 1, 0, 'f' }, { "epoch", 1, 0, 'e' }, { "ring-mb", 1, 0, 'R' }, { "journal-mb", 1, 0, 'J' },
        { "max-outstanding", 1, 0, 'o' }, { "heartbeat-ms", 1, 0, 'h' }, { "max-orders", 1, 0, 'O' },
        { "max-levels", 1, 0, 'L' }, { "events", 1, 0, 'E' }, { "depth", 1, 0, 'd' }, { "exit-when-done", 0, 0, 'x' },
        { "list-devices", 0, 0, 'D' }, { "snapshot", 1, 0, 'N' }, { "failover-timeout-ms", 1, 0, 'F' }, { "promote-on-silence", 0, 0, 'A' }, { "idle", 1, 0, 'i' }, { "connect-timeout-ms", 1, 0, 'c' },
        { "core", 1, 0, 'C' }, { "trace", 1, 0, 'T' }, { "trace-max", 1, 0, 'M' }, { "guard", 0, 0, 'G' },
        { "wins-ties", 0, 0, 'W' }, { "probe", 0, 0, 'Q' }, { "snapshot-dir", 1, 0, 'Y' }, { "write-kb", 1, 0, 'K' },
        { "ship-journal", 1, 0, 'H' }, { "witness", 1, 0, 'w' }, { "pair", 1, 0, 'I' },
        { "witness-key-file", 1, 0, 'k' },
        { 0, 0, 0, 0 }
    };
    int ch;
    uint32_t ct = 5000;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'r': o.role = optarg; break;
        case 'p': o.provider = optarg; break;
        case 'j': o.journal = optarg; break;
        case 'P': o.peer = optarg; break;
        case 'l': o.listen = optarg; break;
        case 's': o.segment = optarg; break;
        case 'S': o.status = optarg; break;
        case 'n': o.name = optarg; break;
        case 'f': o.from = optarg; break;
        case 'e': bad = parse_u32(optarg, &o.epoch, "--epoch"); break;
        case 'R': bad = parse_u32(optarg, &o.ring_mb, "--ring-mb"); break;
        case 'J': bad = parse_u32(optarg, &o.journal_mb, "--journal-mb"); break;
        case 'o': bad = parse_u32(optarg, &o.max_outstanding, "--max-outstanding"); break;
        case 'h': bad = parse_u32(optarg, &o.heartbeat_ms, "--heartbeat-ms"); break;
        case 'O': bad = parse_u32(optarg, &o.max_orders, "--max-orders"); break;
        case 'L': bad = parse_u32(optarg, &o.max_levels, "--max-levels"); break;
        case 'E': bad = parse_u32(optarg, &o.events, "--events"); break;
        case 'd': bad = parse_u32(optarg, &o.depth, "--depth"); break;
        case 'c': bad = parse_u32(optarg, &ct, "--connect-timeout-ms"); break;
        case 'C': {
            uint32_t c;
            if (!(bad = parse_u32(optarg, &c, "--core")))
                o.core = (int)c;
            break;
        }
        case 'T': o.trace = optarg; break;
        case 'M': bad = parse_u32(optarg, &o.trace_max, "--trace-max"); break;
        case 'x': o.exit_when_done = 1; break;
        case 'N': o.snapshot = optarg; break;
        case 'F': bad = parse_u32(optarg, &o.failover_timeout_ms, "--failover-timeout-ms"); break;
        case 'D': o.list = 1; break;
        case 'A': o.promote_on_silence = 1; break;
        case 'G': o.guard = 1; break;
        case 'W': o.wins_ties = 1; break;
        case 'Q': o.probe = 1; break;
        case 'Y': o.snapshot_dir = optarg; break;
        case 'K': bad = parse_u32(optarg, &o.write_kb, "--write-kb"); break;
        case 'H': o.ship_journal = optarg; break;
        case 'w':
            if (o.nwitness == WIT_MAX) {
                fprintf(stderr, "fh-replicate: --witness %s: %d witnesses at most\n", optarg, WIT_MAX);
                return 2;
            }
            o.witness[o.nwitness++] = optarg;
            break;
        case 'I': o.pair = optarg; break;
        case 'k': o.witness_key_file = optarg; break;
        case 'i':
            if (strcmp(optarg, "spin") && strcmp(optarg, "backoff")) {
                fprintf(stderr, "fh-replicate: --idle %s: spin or backoff\n", optarg);
                return 2;
            }
            o.spin = !strcmp(optarg, "spin");
            break;
        default: usage(); return 2;
        }
        if (bad)
            return 2;
    }
    o.connect_timeout_ms = (int)ct;
    if (strcmp(o.provider, "auto") && strcmp(o.provider, "verbs") && strcmp(o.provider, "tcp")) {
        fprintf(stderr, "fh-replicate: --provider %s: auto, verbs or tcp\n", o.provider);
        return 2;
    }
    if (o.list) {
        static char out[65536];
        int n = fh_fab_list(o.provider, out, sizeof out);
        if (n < 0) {
            fprintf(stderr, "fh-replicate: %s\n", fh_fab_err());
            return 3;
        }
        printf("%s\n", out);
        return 0;
    }
    if (o.max_outstanding < 1 || o.max_outstanding > 4096 || o.heartbeat_ms < 1) {
        fprintf(stderr, "fh-replicate: --max-outstanding 1..4096 and --heartbeat-ms >= 1 expected\n");
        return 2;
    }
    if (o.core >= 0) { /* --core N: this role on its own core (with --idle spin, the lag benchmark's setting) */
        cpu_set_t cs;
        CPU_ZERO(&cs);
        CPU_SET(o.core, &cs);
        if (o.core >= CPU_SETSIZE || sched_setaffinity(0, sizeof cs, &cs)) {
            fprintf(stderr, "fh-replicate: --core %d: %s (the cores here: 0..%ld)\n", o.core,
                    o.core >= CPU_SETSIZE ? "out of range" : strerror(errno), sysconf(_SC_NPROCESSORS_ONLN) - 1);
            return 2;
        }
    }
    if (o.trace_max < 1) {
        fprintf(stderr, "fh-replicate: --trace-max 0: at least 1 record\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGUSR1, on_promote);
    signal(SIGUSR2, on_unguard);
    signal(SIGHUP, on_rekey);
    fh_fab_interrupted = on_interrupted;
    if (o.role && !strcmp(o.role, "primary") && (o.journal || o.probe) && o.peer)
        return primary(&o);
    if (o.role && !strcmp(o.role, "standby") && (o.listen || o.peer))
        return standby(&o);
    usage();
    return 2;
}
