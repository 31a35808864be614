/* fh/journal_file.h: the journal files fh record writes (docs/journal.md), read in C for a restart.
 *
 * A file: a 64-byte header (magic "FHJFILE1", version 1, header size 64, session, day, part, first sequence,
 * created ns, 8 reserved, CRC-32 of the first 60 bytes), then records: payload length u32, CRC-32 of the
 * payload u32, payload = kind u8, 0, count u16, 0 u32, sequence u64, argument u64, then for MSGS the message
 * blocks (u16 big-endian length + message). Little-endian. The CRC is zlib's CRC-32 (IEEE 802.3, reflected,
 * polynomial 0xEDB88320), as handler/journal.py writes it: not the snapshots' CRC-32C.
 *
 * fh_jfile_apply is handler/journal.py's read_journal_file(path, after=...) and the apply loop of
 * handler/snapshot.py's restore() in one pass over the mapped file: the same records stepped over, the same
 * checks, the same one-line messages, the same messages applied. The Python reader stays for the tools that
 * need the records one by one (fh decode, fh book dump --journal, fh record's resume). */
#ifndef FH_JOURNAL_FILE_H
#define FH_JOURNAL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "fh/book.h"

#define FH_JFILE_HDR_SIZE  64
#define FH_JFILE_REC_HEAD  8   /* payload length u32, CRC-32 u32 */
#define FH_JFILE_PAYLOAD   24  /* kind, 0, count, 0, sequence, argument */

/* What one file gave. On an error, the fields hold what was read and applied before the fault. */
typedef struct fh_jfile_result {
    char session[10];    /* the header's session (space padded, as MoldUDP64 has it) */
    uint32_t day;        /* YYYYMMDD */
    uint32_t part;
    uint64_t first_seq;
    uint64_t stepped;    /* records wholly before `after`, stepped over unread (neither checked nor applied) */
    uint64_t records;    /* records read: each length and CRC checked */
    uint64_t msgs_records; /* of them MSGS */
    uint64_t holes;      /* of them LOST or MISSED (not applied: restore() leaves them to the lines) */
    uint64_t messages;   /* messages applied to the engine */
    uint64_t end_seq;    /* the sequence after the last sequenced MSGS/LOST/MISSED record read; 0: none */
    uint64_t bytes;      /* the length of the sound prefix: the file's size when it is whole */
} fh_jfile_result_t;

/* Read the journal file at path and apply its MSGS records to e (NULL: check only, apply nothing).
 * after: the first sequence the engine does not hold yet (a snapshot's next sequence; 0: none). The leading
 * sequenced MSGS/LOST/MISSED records wholly before it are stepped over unread; a MSGS record that straddles it
 * has only its messages from `after` on applied; the records after it, every message.
 * Returns 0, or -1 with fh_errmsg() ending in the same one line handler/journal.py gives ("PATH: truncated:
 * the record at offset N runs past the end of the file (K trailing bytes)", "PATH: the record at offset N
 * fails its CRC: the file is damaged (the records before it are sound)", a bad header, an unreadable file).
 * The records before a fault have been applied by then: the caller discards the engine (restore() raises).
 * Not a hot-path function: it maps the file (madvise sequential) and unmaps it before returning. */
int fh_jfile_apply(fh_engine_t *e, const char *path, uint64_t after, fh_jfile_result_t *out);

/* zlib's CRC-32 of n bytes continuing from crc (0 to start): crc32(crc, p, n) of zlib and Python's
 * zlib.crc32. Carry-less multiplication (PCLMULQDQ) folding for 64 bytes and more where the CPU has it,
 * slicing by 8 bytes otherwise and for the tail. */
uint32_t fh_crc32(uint32_t crc, const void *p, size_t n);

#endif
