// fh-book-top SEGMENT SYMBOL [DEPTH]: a C++17 reader of an fh segment. It prints one book's top DEPTH levels
// (default 10) as the canonical dump line of `fh book SYMBOL --json`:
//
//     {"locate": 13, "symbol": "AAPL", "bids": [[1850100, 300, 2], ...], "asks": [[1850200, 100, 1], ...]}
//
// It includes fh/shm.h and nothing else of fh, and builds against the installed header alone:
//
//     g++ -std=c++17 $(pkg-config --cflags fh-shm) book_top.cpp -o fh-book-top
//
// Exit 0, 1 if the symbol has no book, 2 on a usage or join error.
#include <fh/shm.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

// RAII over the reader's join / leave.
class Segment {
public:
    explicit Segment(const std::string &path) { err_ = fh_shm_join(&r_, path.c_str()); }
    ~Segment() { fh_shm_leave(&r_); }
    Segment(const Segment &) = delete;
    Segment &operator=(const Segment &) = delete;
    int error() const { return err_; }
    const fh_shm_reader_t *get() const { return &r_; }

private:
    fh_shm_reader_t r_{};
    int err_ = 0;
};

std::string_view symbol_of(const fh_shm_book_t &b)
{
    return std::string_view(b.symbol, b.symbol_len <= 8 ? b.symbol_len : 8);
}

void print_levels(const fh_shm_level_t *lv, uint32_t n)
{
    std::fputc('[', stdout);
    for (uint32_t j = 0; j < n; j++)
        std::printf("%s[%lld, %llu, %u]", j ? ", " : "", static_cast<long long>(lv[j].price),
                    static_cast<unsigned long long>(lv[j].shares), lv[j].orders);
    std::fputc(']', stdout);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        std::fprintf(stderr, "usage: fh-book-top SEGMENT SYMBOL [DEPTH]\n");
        return 2;
    }
    std::string path = argv[1];
    if (path.find('/') == std::string::npos)
        path = "/dev/shm/fh-" + path; // an instance name
    const std::string_view want = argv[2];
    const uint32_t depth = argc == 4 ? static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) : 10;
    Segment seg(path);
    if (seg.error()) {
        std::fprintf(stderr, "fh-book-top: %s: %s\n", path.c_str(), std::strerror(-seg.error()));
        return 2;
    }
    const fh_shm_reader_t *r = seg.get();
    fh_shm_snapshot_t s;
    for (uint32_t loc = 0; loc < r->nbooks; loc++) {
        if (r->books[loc].status == FH_BOOK_EMPTY || fh_shm_snapshot(r, loc, depth, &s) < 0)
            continue;
        if (symbol_of(s.book) != want)
            continue;
        std::string sym(symbol_of(s.book));
        std::printf("{\"locate\": %u, \"symbol\": \"%s\", \"bids\": ", loc, sym.c_str());
        print_levels(s.bids, s.nbids);
        std::fputs(", \"asks\": ", stdout);
        print_levels(s.asks, s.nasks);
        std::fputs("}\n", stdout);
        return 0;
    }
    std::fprintf(stderr, "fh-book-top: %.*s: no book in %s\n", static_cast<int>(want.size()), want.data(),
                 path.c_str());
    return 1;
}
