/* Fuzz target: the ITCH 5.0 decoder and the book engine (fh/itch.h, fh/book.h). Input: a stream of 2-byte-
 * length blocks, as in NASDAQ's daily files (so real days and generated ones are seeds as they are). Each
 * block is checked (fh_itch_check) and decoded to JSON when whole (fh_itch_to_json must write a NUL-terminated
 * object of the length it returns, and refuse exactly what the check refuses); the stream goes through
 * fh_engine_apply_blocks, which must consume up to the first truncated block and count every block it saw;
 * then the book invariants (fuzz.h) must hold, and the parse-only pass must count the same messages. A small
 * engine (64 instruments, 512 orders, 1024 levels) so that the capacity limits are reached too. */
#include "fh/itch.h"
#include "fh/mold.h"
#include "fuzz.h"

#define LEVELS 1024
static fh_engine_t *eng;
static void done(void) { fh_engine_destroy(eng); } /* so that LeakSanitizer sees the engine freed */
static char json[FH_ITCH_JSON_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!eng) {
        if (!(eng = fh_engine_create(&(fh_engine_cfg_t){ 64, 512, LEVELS }))) {
            fprintf(stderr, "fuzz_book: %s\n", fh_errmsg());
            abort();
        }
        atexit(done);
    }
    fh_engine_reset(eng);
    fz_t in = { data, size };
    size_t len;
    uint8_t *p = fz_take(&in, size, &len);

    fh_blocks_t w = { p, p + len };
    const uint8_t *m;
    size_t n, blocks = 0;
    while (fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK) {
        blocks++;
        uint8_t *copy = calloc(n ? n : 1, 1); /* exactly n bytes: a read past the message is caught */
        memcpy(copy, m, n);
        fh_itch_check_t ck = fh_itch_check(copy, n);
        int jl = fh_itch_to_json(copy, n, json, sizeof json);
        if (ck == FH_ITCH_OK || ck == FH_ITCH_LONG) {
            FZ_ASSERT(jl > 1 && (size_t)jl < sizeof json && json[jl] == '\0' && strlen(json) == (size_t)jl);
            FZ_ASSERT(json[0] == '{' && json[jl - 1] == '}');
            size_t nf;
            FZ_ASSERT(fh_itch_fields(copy[0], &nf) != NULL && nf >= 4);
        } else {
            FZ_ASSERT(jl == (int)ck);
        }
        free(copy);
    }
    size_t used = fh_engine_apply_blocks(eng, p, len);
    FZ_ASSERT(used == (size_t)(w.p - p));
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(eng, c);
    FZ_ASSERT(c[FH_C_messages] == blocks);
    FZ_ASSERT(c[FH_C_truncated] == (w.p != w.end));
    uint64_t sum;
    FZ_ASSERT(fh_itch_scan(p, len, &sum) == blocks);
    fz_check_engine(eng, LEVELS);
    free(p);
    return 0;
}
