/* standby.h: fh-dataplane --standby JOURNAL, the standby host's data plane (docs/replication.md, "Failover").
 *
 * On the standby host the engine and the segment belong to the data plane, as on the primary, so nothing is
 * handed over at failover. While standby it
 *   - follows JOURNAL, the ring fh-replicate --role standby writes with what the primary shipped, and applies
 *     its records to the engine exactly as fh-replicate would (messages; holes mark every book stale): the
 *     books and the event sequence equal the primary's;
 *   - receives its own feed lines and holds every datagram back (applied: none) in a bounded ring of
 *     datagrams; a held datagram whose messages the journal has covered is released (counted per line), as is
 *     one with nothing the feed could take from it (not MoldUDP64; another session's heartbeat or end); when
 *     the ring is full the oldest is overwritten (counted per line: what it carried must then come from the
 *     retransmission server or the books go stale, as for any gap).
 * Promotion: a FH_JR_PROMOTED record in JOURNAL (fh-replicate writes it on `fh promote` or when the primary's
 * heartbeat has been absent for the failover timeout: every record the primary shipped lies before it), or
 * SIGUSR1 to the data plane itself (fh_standby_promote: the journal is read to its head first). The data
 * plane then resumes its feed at the session and sequence after the last journaled message
 * (fh_mold_feed_resume) and hands it the held datagrams in arrival order: those the journal covered are
 * duplicates to MoldUDP64, the rest fill the hole, and what neither holds is a gap like any other
 * (retransmission, or stale with its notices). From then on it is a data plane like the primary's.
 *
 * The journal recreated (the standby's fh-replicate restarted by fh run: a new file at the same path, its writer
 * alive) is followed again from its oldest record, the messages already applied skipped (counted: skipped,
 * rejoins).
 *
 * Nothing here allocates, blocks or makes a syscall after fh_standby_open, except, while standby and idle, the
 * journal join while the journal does not exist yet and the check for a recreated journal (stat, and flock
 * when the file changed), each at most every 100 ms. Not DPDK-specific: the caller passes TSC values. */
#ifndef FH_DATAPLANE_STANDBY_H
#define FH_DATAPLANE_STANDBY_H

#include <stdint.h>
#include <stdio.h>

#include "fh/book.h"
#include "fh/journal.h"
#include "fh/journal_mold.h"
#include "fh/mold.h"

#define FH_STANDBY_SLOT 2048u /* bytes a held datagram may have (MoldUDP64 datagrams fit an Ethernet MTU) */

typedef struct fh_standby fh_standby_t;

/* How a held datagram is applied at promotion: the caller's own feed path (journal tee included). */
typedef int (*fh_standby_apply_fn)(void *ctx, const uint8_t *d, size_t len, int line, uint64_t now);

/* journal: the standby fh-replicate's journal (it may not exist yet); hold: datagrams the hold-back ring
 * keeps (a power of two); ring_mem: the ring, fh_standby_ring_bytes(hold) zeroed bytes, 64-byte aligned, that
 * the caller allocates (the data plane: rte_zmalloc_socket on the port's NUMA node) and frees after
 * fh_standby_close; e: the data plane's engine; tee: its own journal tee (--journal) or NULL, which is then fed
 * the records followed, so that its journal holds the whole day too. NULL with a message on stderr. */
size_t fh_standby_ring_bytes(uint32_t hold);
fh_standby_t *fh_standby_open(const char *journal, uint32_t hold, void *ring_mem, fh_engine_t *e,
                              fh_journal_tee_t *tee, uint64_t tsc_hz);
void fh_standby_close(fh_standby_t *s); /* the ring stays the caller's */

/* While standby: hold a datagram the lines delivered at TSC now (the caller applies nothing of it). */
void fh_standby_hold(fh_standby_t *s, const uint8_t *d, size_t len, int line, uint64_t now);

/* How current the books are against the lines, for the segment's header (fh_shm_hdr_t.standby): CURRENT when
 * every datagram the lines delivered more than FH_SHM_STANDBY_SLACK_NS before now is covered by the journal
 * (and the journal has given something: one that has not is behind any datagram held), BEHIND otherwise
 * (*behind: the messages the lines delivered past the journal's end), NO_LINES when the lines have delivered
 * nothing yet, NO once promoted. Reads only what fh_standby_poll left. */
uint32_t fh_standby_currency(const fh_standby_t *s, uint64_t now, uint64_t *behind);

/* Apply what the journal has (at most max_records), release the held datagrams it covers; on a promotion
 * mark (or after fh_standby_promote), resume the feed and apply the held datagrams through apply. Returns 1
 * once promoted (the caller stops holding and calling this), 0 otherwise. */
int fh_standby_poll(fh_standby_t *s, fh_mold_feed_t *feed, uint64_t now, uint32_t max_records,
                    fh_standby_apply_fn apply, void *ctx);

/* Promote at the next poll, whatever the journal says (SIGUSR1: its records up to its head are applied first). */
void fh_standby_promote(fh_standby_t *s);

/* `"standby": {...}` for the final statistics line: what was followed, held, released, overwritten,
 * replayed, and when (CLOCK_REALTIME ns) the promotion was seen and the first own datagram applied. */
void fh_standby_json(const fh_standby_t *s, FILE *out);

#endif
