/* options.c: fh-dataplane's own options (after EAL's and `--`), their defaults and checks, and --publish.
 *
 *   fh-dataplane [EAL args] -- --segment PATH --line GROUP:PORT[@DEV] [--line GROUP:PORT[@DEV] ...]
 *                [--name NAME] [--port N] [--max-orders N] [--max-levels N] [--events N] [--depth N]
 *                [--ladder-books N]
 *                [--idle spin|backoff] [--warm-us N] [--exit-idle-ms MS] [--keep-segment] [--group GID]
 *                [--igmp v2|v3|off] [--src-ip A.B.C.D] [--mode full|rx-only]
 *                [--retrans-server IP:PORT --retrans-mac MAC [--retrans-dev DEV] [--src-port N]]
 *                [--gap-wait-us N] [--request-timeout-ms N] [--request-retries N] [--request-max N]
 *                [--max-outstanding N] [--hold N] [--unrecoverable resume|snapshot]
 *                [--line-stale-ms N] [--line-down-ms N] [--max-ahead N] [--confirm N] [--recover-max N]
 *
 * Every value is checked before any device is touched; a bad one is refused with one line naming the option
 * and what was expected. The feed's defaults come from fh_mold_cfg_defaults (one source). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "dataplane.h"

void dp_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [EAL args] -- --segment PATH --line GROUP:PORT [--line ...] [--name NAME] [--port N]\n"
            "       [--max-orders N] [--max-levels N] [--events N] [--depth N] [--ladder-books N] [--idle spin|backoff]\n"
            "       [--warm-us N] [--exit-idle-ms MS] [--keep-segment] [--group GID] [--igmp v2|v3|off] [--src-ip A.B.C.D]\n"
            "       [--mode full|rx-only]\n"
            "       lines: --line GROUP:PORT[@DEV] (DEV: a DPDK device name, e.g. 0000:3b:00.1 or net_pcap1)\n"
            "       recovery: [--retrans-server IP:PORT --retrans-mac MAC [--retrans-dev DEV] --src-ip A.B.C.D\n"
            "       [--src-port N]] [--gap-wait-us N] [--request-timeout-ms N] [--request-retries N]\n"
            "       [--request-max N] [--max-outstanding N] [--hold N] [--unrecoverable resume|snapshot]\n"
            "       [--line-stale-ms N] [--line-down-ms N] [--publish SYM,SYM,...|@FILE]\n"
            "       [--line-source A.B.C.D] (after a --line: take it from that source only)\n"
            "       integrity: [--max-ahead N] [--confirm N] [--recover-max N] (0: no limit / believed at once)\n"
            "       [--journal PATH [--journal-mb N]] (every applied message, in order, to a shared-memory ring)\n"
            "       [--restore SNAPSHOT] (start from a snapshot's books and feed position: a restart)\n"
            "       [--standby JOURNAL [--standby-hold N]] (a standby: apply that journal, hold the lines back; take\n"
            "       them at its promotion mark or SIGUSR1)\n"
            "       signals: SIGINT/SIGTERM stop (books left as they are); SIGUSR2 stops with every book marked stale\n"
            "       (fh run: a demoted primary)\n"
            "       [--snapshot-source A.B.C.D:PORT,user=U[,password-file=F][,idle-ms=N][,retries=N]...] (SoupBinTCP, "
            "for --unrecoverable snapshot)\n",
            prog);
}

static int parse_u32(const char *s, uint32_t *out, const char *what)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > UINT32_MAX) {
        fprintf(stderr, "fh-dataplane: %s: expected a number, got '%s'\n", what, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* "IPV4:PORT" in s (which is cut at the colon) into *ip (host byte order) and *port (<= 65535). 0, or -1
 * (the caller says what was expected). */
static int parse_ip_port(char *s, uint32_t *ip, uint32_t *port, const char *what)
{
    char *colon = strrchr(s, ':');
    struct in_addr a;
    if (!colon || (*colon = 0, inet_pton(AF_INET, s, &a) != 1) || parse_u32(colon + 1, port, what) || *port > 65535)
        return -1;
    *ip = ntohl(a.s_addr);
    return 0;
}

int dp_parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        { "segment", required_argument, 0, 's' },   { "line", required_argument, 0, 'L' },
        { "name", required_argument, 0, 'n' },      { "port", required_argument, 0, 'p' },
        { "max-orders", required_argument, 0, 'o' }, { "max-levels", required_argument, 0, 'v' },
        { "events", required_argument, 0, 'e' },    { "depth", required_argument, 0, 'd' },
        { "idle", required_argument, 0, 'i' },      { "exit-idle-ms", required_argument, 0, 'x' },
        { "keep-segment", no_argument, 0, 'k' },    { "group", required_argument, 0, 'G' },    { "igmp", required_argument, 0, 'g' },
        { "src-ip", required_argument, 0, 'S' },    { "mode", required_argument, 0, 'm' },
        { "retrans-server", required_argument, 0, 256 }, { "retrans-mac", required_argument, 0, 257 },
        { "retrans-dev", required_argument, 0, 258 },    { "src-port", required_argument, 0, 259 },
        { "gap-wait-us", required_argument, 0, 260 },    { "request-timeout-ms", required_argument, 0, 261 },
        { "request-retries", required_argument, 0, 262 }, { "request-max", required_argument, 0, 263 },
        { "max-outstanding", required_argument, 0, 264 }, { "hold", required_argument, 0, 265 },
        { "unrecoverable", required_argument, 0, 266 },  { "line-stale-ms", required_argument, 0, 267 },
        { "line-down-ms", required_argument, 0, 268 }, { "publish", required_argument, 0, 269 },
        { "line-source", required_argument, 0, 270 },   { "max-ahead", required_argument, 0, 271 },
        { "confirm", required_argument, 0, 272 },       { "recover-max", required_argument, 0, 273 },
        { "journal", required_argument, 0, 274 }, { "journal-mb", required_argument, 0, 275 },
        { "snapshot-source", required_argument, 0, 279 },
        { "restore", required_argument, 0, 276 },
        { "standby", required_argument, 0, 277 }, { "standby-hold", required_argument, 0, 278 },
        { "ladder-books", required_argument, 0, 280 }, { "warm-us", required_argument, 0, 281 },
        { 0, 0, 0, 0 },
    };
    fh_mold_cfg_t d; /* the feed's defaults, in ms: one source (fh_mold_cfg_defaults), not a copy */
    fh_mold_cfg_defaults(&d, 1);
    *o = (opts_t){ .name = "fh", .port = -1, .gid = -1, .max_orders = 8u << 20, .max_levels = 4u << 20, .events = 1u << 16,
                   .depth = 10, .ladder_books = FH_SEG_LADDER_BOOKS, .spin = true, .warm_us = -1, .igmp = 2, .src_port = 40000, .gap_wait_us = (uint32_t)(d.gap_wait * 1000),
                   .request_timeout_ms = (uint32_t)d.request_timeout, .request_retries = d.retries,
                   .request_max = d.request_max, .max_outstanding = d.max_outstanding, .hold = d.hold,
                   .line_stale_ms = (uint32_t)d.line_stale, .line_down_ms = (uint32_t)d.line_down,
                   .max_ahead = (uint32_t)d.max_ahead, .confirm = d.confirm, .recover_max = (uint32_t)d.recover_max,
                   .journal_mb = 256, .standby_hold = 1u << 16 };
    int c;
    uint32_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 's': o->segment = optarg; break;
        case 'n': o->name = optarg; break;
        case 'k': o->keep = true; break;
        case 'G':
            if (parse_u32(optarg, &v, "--group"))
                return -1;
            o->gid = (int)v;
            break;
        case 'p':
            if (parse_u32(optarg, &v, "--port"))
                return -1;
            o->port = (int)v;
            break;
        case 'o': if (parse_u32(optarg, &o->max_orders, "--max-orders")) return -1; break;
        case 'v': if (parse_u32(optarg, &o->max_levels, "--max-levels")) return -1; break;
        case 'e': if (parse_u32(optarg, &o->events, "--events")) return -1; break;
        case 'd': if (parse_u32(optarg, &o->depth, "--depth")) return -1; break;
        case 280:
            if (parse_u32(optarg, &o->ladder_books, "--ladder-books"))
                return -1;
            if (o->ladder_books > FH_SEG_MAX_LADDER_BOOKS) {
                fprintf(stderr, "fh-dataplane: --ladder-books must be 0..%u (books with a price ladder; 0: none), not %s\n",
                        FH_SEG_MAX_LADDER_BOOKS, optarg);
                return -1;
            }
            break;
        case 281: {
            uint32_t v;
            if (parse_u32(optarg, &v, "--warm-us"))
                return -1;
            if (v > DP_WARM_US_MAX) {
                fprintf(stderr, "fh-dataplane: --warm-us must be 0..%u (µs to warm every book once while idle; 0: "
                                "none), not %s\n", DP_WARM_US_MAX, optarg);
                return -1;
            }
            o->warm_us = v;
            break;
        }
        case 'x': if (parse_u32(optarg, &o->exit_idle_ms, "--exit-idle-ms")) return -1; break;
        case 'i':
            if (strcmp(optarg, "spin") && strcmp(optarg, "backoff")) {
                fprintf(stderr, "fh-dataplane: --idle must be spin or backoff, not '%s'\n", optarg);
                return -1;
            }
            o->spin = !strcmp(optarg, "spin");
            break;
        case 'g':
            if (!strcmp(optarg, "v2") || !strcmp(optarg, "v3") || !strcmp(optarg, "off")) {
                o->igmp = optarg[0] == 'v' ? optarg[1] - '0' : 0;
            } else {
                fprintf(stderr, "fh-dataplane: --igmp must be v2, v3 or off, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'S': {
            struct in_addr a;
            if (inet_pton(AF_INET, optarg, &a) != 1) {
                fprintf(stderr, "fh-dataplane: --src-ip '%s': expected an IPv4 address, e.g. 10.0.0.2\n", optarg);
                return -1;
            }
            o->src_ip = ntohl(a.s_addr);
            break;
        }
        case 'm':
            if (strcmp(optarg, "full") && strcmp(optarg, "rx-only")) {
                fprintf(stderr, "fh-dataplane: --mode must be full or rx-only, not '%s'\n", optarg);
                return -1;
            }
            o->rx_only = !strcmp(optarg, "rx-only");
            break;
        case 256: {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            if (parse_ip_port(buf, &o->retrans_ip, &v, "--retrans-server port") || v == 0) {
                fprintf(stderr, "fh-dataplane: --retrans-server '%s': expected IPV4:PORT of the feed's request server, "
                                "e.g. 10.1.2.3:18000\n", optarg);
                return -1;
            }
            o->retrans_port = (uint16_t)v;
            break;
        }
        case 257: {
            unsigned m[6];
            char end;
            if (sscanf(optarg, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &end) != 6 ||
                m[0] > 255 || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255 || m[5] > 255) {
                fprintf(stderr, "fh-dataplane: --retrans-mac '%s': expected a MAC address, e.g. 02:00:00:00:00:01\n",
                        optarg);
                return -1;
            }
            for (int i = 0; i < 6; i++)
                o->retrans_mac[i] = (uint8_t)m[i];
            o->have_retrans_mac = true;
            break;
        }
        case 258: snprintf(o->retrans_dev, sizeof o->retrans_dev, "%s", optarg); break;
        case 259:
            if (parse_u32(optarg, &v, "--src-port") || v == 0 || v > 65535) {
                fprintf(stderr, "fh-dataplane: --src-port must be 1 to 65535\n");
                return -1;
            }
            o->src_port = (uint16_t)v;
            break;
        case 260: if (parse_u32(optarg, &o->gap_wait_us, "--gap-wait-us")) return -1; break;
        case 261: if (parse_u32(optarg, &o->request_timeout_ms, "--request-timeout-ms")) return -1; break;
        case 262: if (parse_u32(optarg, &o->request_retries, "--request-retries")) return -1; break;
        case 263: if (parse_u32(optarg, &o->request_max, "--request-max")) return -1; break;
        case 264: if (parse_u32(optarg, &o->max_outstanding, "--max-outstanding")) return -1; break;
        case 265: if (parse_u32(optarg, &o->hold, "--hold")) return -1; break;
        case 266:
            if (strcmp(optarg, "resume") && strcmp(optarg, "snapshot")) {
                fprintf(stderr, "fh-dataplane: --unrecoverable must be resume or snapshot, not '%s'\n", optarg);
                return -1;
            }
            o->unrecoverable = strcmp(optarg, "resume") ? FH_MOLD_SNAPSHOT : FH_MOLD_RESUME;
            break;
        case 267: if (parse_u32(optarg, &o->line_stale_ms, "--line-stale-ms")) return -1; break;
        case 268: if (parse_u32(optarg, &o->line_down_ms, "--line-down-ms")) return -1; break;
        case 271: if (parse_u32(optarg, &o->max_ahead, "--max-ahead")) return -1; break;
        case 272: if (parse_u32(optarg, &o->confirm, "--confirm")) return -1; break;
        case 273: if (parse_u32(optarg, &o->recover_max, "--recover-max")) return -1; break;
        case 269: o->publish = optarg; break;
        case 274: o->journal = optarg; break;
        case 275: if (parse_u32(optarg, &o->journal_mb, "--journal-mb")) return -1; break;
        case 276: o->restore = optarg; break;
        case 277: o->standby = optarg; break;
        case 278: if (parse_u32(optarg, &o->standby_hold, "--standby-hold")) return -1; break;
        case 279:
            o->snapshot_source = optarg;
            if (fh_glimpse_parse_spec(&o->snapshot_cfg, optarg)) {
                fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
                return -1;
            }
            break;
        case 270: { /* the source of the --line before it (source-specific multicast) */
            struct in_addr a;
            if (inet_pton(AF_INET, optarg, &a) != 1 || !o->net.nlines) {
                fprintf(stderr, "fh-dataplane: --line-source '%s': expected an IPv4 address after a --line, e.g. "
                                "--line 233.54.12.111:26477 --line-source 206.200.1.1\n", optarg);
                return -1;
            }
            fh_net_set_source(&o->net, o->net.nlines - 1, ntohl(a.s_addr));
            break;
        }
        case 'L': {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *at = strchr(buf, '@');
            if (at) {
                *at = 0;
                if (!at[1] || strlen(at + 1) >= sizeof o->line_dev[0]) {
                    fprintf(stderr, "fh-dataplane: --line '%s': name a DPDK device after @, e.g. "
                                    "233.54.12.111:26477@0000:3b:00.1\n", optarg);
                    return -1;
                }
                if (o->net.nlines < FH_NET_MAX_LINES)
                    snprintf(o->line_dev[o->net.nlines], sizeof o->line_dev[0], "%s", at + 1);
            }
            uint32_t ip;
            if (parse_ip_port(buf, &ip, &v, "--line port")) {
                fprintf(stderr, "fh-dataplane: --line '%s': expected IPV4:PORT, e.g. 233.54.12.111:26477\n", optarg);
                return -1;
            }
            if (fh_net_add_line(&o->net, ip, (uint16_t)v, 0) < 0) {
                fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
                return -1;
            }
            break;
        }
        default:
            dp_usage(argv[0]);
            return -1;
        }
    }
    if (!o->rx_only && (!o->segment || !o->net.nlines)) {
        fprintf(stderr, "fh-dataplane: --segment and at least one --line are required\n");
        dp_usage(argv[0]);
        return -1;
    }
    o->nfeed = o->net.nlines;
    if (o->warm_us < 0) /* warming is for a spinning core: a napping one has left its cache to others anyway */
        o->warm_us = o->spin ? DP_WARM_US : 0;
    if (o->retrans_ip) {
        if (!o->src_ip) {
            fprintf(stderr, "fh-dataplane: --retrans-server needs --src-ip, the address the replies come back to\n");
            return -1;
        }
        if (!o->have_retrans_mac) {
            fprintf(stderr, "fh-dataplane: --retrans-server needs --retrans-mac, the next hop's MAC address (fh run "
                            "finds it in the neighbour table, or set feed.retransmission.mac)\n");
            return -1;
        }
        if (o->net.nlines >= FH_NET_MAX_LINES) {
            fprintf(stderr, "fh-dataplane: at most %d lines with a retransmission server\n", FH_NET_MAX_LINES - 1);
            return -1;
        }
        /* The replies: unicast to our address and port, from the server only. */
        fh_net_add_line(&o->net, o->src_ip, o->src_port, o->retrans_ip);
    }
    if (o->line_down_ms && o->line_stale_ms >= o->line_down_ms) {
        fprintf(stderr, "fh-dataplane: --line-stale-ms (%u) must be below --line-down-ms (%u)\n", o->line_stale_ms,
                o->line_down_ms);
        return -1;
    }
    return 0;
}

/* --publish SYM,SYM,... or @FILE (one symbol a line, # comments): the engine publishes only those. Start-up
 * only. 0, or -1 with a message. */
int dp_set_publish(fh_engine_t *e, const char *spec)
{
    static char buf[1 << 20];
    size_t len = 0;
    char sep = ',';
    if (spec[0] == '@') {
        FILE *fp = fopen(spec + 1, "r");
        if (!fp) {
            fprintf(stderr, "fh-dataplane: --publish %s: %s\n", spec, strerror(errno));
            return -1;
        }
        len = fread(buf, 1, sizeof buf - 1, fp);
        int big = !feof(fp);
        fclose(fp);
        if (big) {
            fprintf(stderr, "fh-dataplane: --publish %s: larger than 1 MiB; one symbol a line is enough\n", spec);
            return -1;
        }
        sep = '\n';
    } else {
        len = strlen(spec) < sizeof buf - 1 ? strlen(spec) : sizeof buf - 1;
        memcpy(buf, spec, len);
    }
    buf[len] = 0;
    static const char *syms[65536];
    uint32_t n = 0;
    for (char *p = buf, *next; p && *p; p = next) {
        next = strchr(p, sep);
        if (next)
            *next++ = 0;
        char *hash = sep == '\n' ? strchr(p, '#') : NULL;
        if (hash)
            *hash = 0;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            *--end = 0;
        if (!*p)
            continue;
        if (n == 65536) {
            fprintf(stderr, "fh-dataplane: --publish: more than 65,536 instruments\n");
            return -1;
        }
        syms[n++] = p;
    }
    if (n == 0) {
        fprintf(stderr, "fh-dataplane: --publish %s: no symbol in it (leave --publish out to publish every book)\n",
                spec);
        return -1;
    }
    if (fh_engine_set_publish_filter(e, syms, n)) {
        fprintf(stderr, "fh-dataplane: --publish: %s\n", fh_errmsg());
        return -1;
    }
    fprintf(stderr, "fh-dataplane: publishing %u instrument(s); the others' books are kept but not published\n", n);
    return 0;
}
