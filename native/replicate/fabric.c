/* fabric.c: the replication transport over libfabric (see fabric.h). */
#define _GNU_SOURCE
#include "fabric.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __thread char errbuf[512];

const char *fh_fab_err(void)
{
    return errbuf;
}

int fh_fab_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return -1;
}

#define fail fh_fab_fail

#define MR_MODES (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT)

static struct fi_info *make_hints(const char *prov)
{
    struct fi_info *h = fi_allocinfo();
    if (!h)
        return NULL;
    h->caps = FI_MSG | FI_RMA;
    h->ep_attr->type = FI_EP_MSG;
    h->mode = FI_CONTEXT | FI_RX_CQ_DATA;
    h->domain_attr->mr_mode = MR_MODES;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    h->tx_attr->msg_order = FI_ORDER_SAS | FI_ORDER_WAW;
    h->rx_attr->msg_order = FI_ORDER_SAS | FI_ORDER_WAW;
    if (prov && strcmp(prov, "auto"))
        h->fabric_attr->prov_name = strdup(prov);
    return h;
}

/* The one-line error when a provider offers nothing. */
static int no_provider(const char *prov, const char *where, int rc)
{
    if (prov && !strcmp(prov, "verbs"))
        return fail("provider verbs: no RDMA device%s%s (fi_getinfo: %s): install rdma-core and the NIC's provider "
                    "(ibverbs-providers, e.g. mlx5), check `ibv_devices` / `fi_info -p verbs`, or set provider = \"tcp\"",
                    where ? " for " : "", where ? where : "", fi_strerror(-rc));
    return fail("provider %s: no fabric endpoint%s%s with RMA and remote CQ data (fi_getinfo: %s): "
                "install libfabric1 (and rdma-core for verbs), check `fi_info -t FI_EP_MSG`",
                prov ? prov : "auto", where ? " for " : "", where ? where : "", fi_strerror(-rc));
}

/* auto: verbs when a device exists, else tcp. */
static int getinfo(const char *prov, const char *host, const char *port, uint64_t flags, struct fi_info **hints,
                   struct fi_info **info)
{
    const char *order[2] = { prov, NULL };
    int n = 1;
    if (!prov || !strcmp(prov, "auto")) {
        order[0] = "verbs";
        order[1] = "tcp";
        n = 2;
    } else if (strcmp(prov, "verbs") && strcmp(prov, "tcp")) {
        return fail("provider %s: unknown; use auto, verbs or tcp", prov);
    }
    int rc = -FI_ENODATA;
    for (int i = 0; i < n; i++) {
        struct fi_info *h = make_hints(order[i]);
        if (!h)
            return fail("fi_allocinfo: out of memory");
        rc = fi_getinfo(FI_VERSION(1, 17), host, port, flags, h, info);
        if (!rc) {
            *hints = h;
            return 0;
        }
        fi_freeinfo(h);
    }
    char where[160];
    snprintf(where, sizeof where, "%s:%s", host ? host : "*", port ? port : "*");
    return no_provider(n == 2 ? "auto (verbs, tcp)" : prov, where, rc);
}

int fh_fab_list(const char *prov, char *out, size_t cap)
{
    struct fi_info *h = make_hints(prov && strcmp(prov, "auto") ? prov : NULL), *info = NULL;
    if (!h)
        return fail("fi_allocinfo: out of memory");
    int rc = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, h, &info);
    fi_freeinfo(h);
    size_t o = 0;
    int n = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    if (!rc) {
        for (struct fi_info *i = info; i && o < cap; i = i->next) {
            o += (size_t)snprintf(out + o, o < cap ? cap - o : 0,
                                  "%s{\"provider\": \"%s\", \"fabric\": \"%s\", \"domain\": \"%s\", "
                                  "\"mr_mode\": %llu, \"cq_data_size\": %zu}",
                                  n ? ", " : "", i->fabric_attr->prov_name, i->fabric_attr->name,
                                  i->domain_attr->name, (unsigned long long)i->domain_attr->mr_mode,
                                  i->domain_attr->cq_data_size);
            n++;
        }
        fi_freeinfo(info);
    }
    if (o < cap)
        snprintf(out + o, cap - o, "]");
    if (!n && prov && !strcmp(prov, "verbs"))
        return no_provider("verbs", NULL, rc ? rc : -FI_ENODATA);
    return n;
}

static void note_info(fh_fab_t *f, struct fi_info *i)
{
    f->mr_mode = i->domain_attr->mr_mode;
    f->mode = i->mode;
    f->cq_data_size = i->domain_attr->cq_data_size;
    snprintf(f->provider, sizeof f->provider, "%s", i->fabric_attr->prov_name);
    snprintf(f->fabric_name, sizeof f->fabric_name, "%s", i->fabric_attr->name);
    snprintf(f->domain_name, sizeof f->domain_name, "%s", i->domain_attr->name ? i->domain_attr->name : "");
}

int fh_fab_reg(fh_fab_t *f, void *buf, size_t len, uint64_t access, fh_fab_mr_t *m)
{
    memset(m, 0, sizeof *m);
    static uint64_t next_key = 1;
    uint64_t req_key = (f->mr_mode & FI_MR_PROV_KEY) ? 0 : next_key++;
    int rc = fi_mr_reg(f->domain, buf, len, access, 0, req_key, 0, &m->mr, NULL);
    if (rc)
        return fail("fi_mr_reg (%zu bytes, provider %s): %s", len, f->provider, fi_strerror(-rc));
    if (f->mr_mode & FI_MR_ENDPOINT) {
        rc = fi_mr_bind(m->mr, &f->ep->fid, 0);
        if (!rc)
            rc = fi_mr_enable(m->mr);
        if (rc)
            return fail("fi_mr_bind/enable (provider %s): %s", f->provider, fi_strerror(-rc));
    }
    m->desc = fi_mr_desc(m->mr);
    m->key = fi_mr_key(m->mr);
    m->addr = (f->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
    return 0;
}

void fh_fab_dereg(fh_fab_mr_t *m)
{
    if (m->mr)
        fi_close(&m->mr->fid);
    memset(m, 0, sizeof *m);
}

static int post_recv(fh_fab_t *f, int slot)
{
    fh_fab_op_t *op = &f->rxop[slot];
    op->kind = FH_FAB_OP_RECV;
    op->slot = slot;
    for (;;) {
        ssize_t rc = fi_recv(f->ep, f->ctl + (size_t)slot * FH_FAB_CTL_SIZE, FH_FAB_CTL_SIZE, f->ctl_mr.desc, 0, op);
        if (!rc)
            return 0;
        if (rc != -FI_EAGAIN)
            return fail("fi_recv (provider %s): %s", f->provider, fi_strerror((int)-rc));
        struct fi_cq_data_entry e;
        (void)fi_cq_read(f->rxcq, &e, 0); /* progress */
    }
}

/* Domain, CQs, endpoint from info (the connection request's on the standby), control buffers, receives. */
static int open_ep(fh_fab_t *f, struct fi_info *info)
{
    int rc = fi_domain(f->fabric, info, &f->domain, NULL);
    if (rc)
        return fail("fi_domain (provider %s): %s", f->provider, fi_strerror(-rc));
    struct fi_cq_attr ca = { .size = 1024, .format = FI_CQ_FORMAT_DATA, .wait_obj = FI_WAIT_NONE };
    if ((rc = fi_cq_open(f->domain, &ca, &f->txcq, NULL)) || (rc = fi_cq_open(f->domain, &ca, &f->rxcq, NULL)))
        return fail("fi_cq_open (provider %s): %s", f->provider, fi_strerror(-rc));
    if ((rc = fi_endpoint(f->domain, info, &f->ep, NULL)))
        return fail("fi_endpoint (provider %s): %s", f->provider, fi_strerror(-rc));
    if ((rc = fi_ep_bind(f->ep, &f->eq->fid, 0)) || (rc = fi_ep_bind(f->ep, &f->txcq->fid, FI_TRANSMIT)) ||
        (rc = fi_ep_bind(f->ep, &f->rxcq->fid, FI_RECV)))
        return fail("fi_ep_bind (provider %s): %s", f->provider, fi_strerror(-rc));
    if ((rc = fi_enable(f->ep)))
        return fail("fi_enable (provider %s): %s", f->provider, fi_strerror(-rc));
    size_t n = (size_t)(FH_FAB_RX_SLOTS + FH_FAB_TX_SLOTS) * FH_FAB_CTL_SIZE;
    if (posix_memalign((void **)&f->ctl, 4096, n))
        return fail("out of memory for control buffers");
    memset(f->ctl, 0, n);
    if (fh_fab_reg(f, f->ctl, n, FI_SEND | FI_RECV, &f->ctl_mr))
        return -1;
    for (int i = 0; i < FH_FAB_TX_SLOTS; i++) {
        f->txfree[i] = i;
        f->txop[i].kind = FH_FAB_OP_SEND;
        f->txop[i].slot = i;
    }
    f->ntxfree = FH_FAB_TX_SLOTS;
    for (int i = 0; i < FH_FAB_RX_SLOTS; i++)
        if (post_recv(f, i))
            return -1;
    return 0;
}

void (*fh_fab_interrupted)(void);

static int wait_event(fh_fab_t *f, uint32_t want, int timeout_ms, struct fi_eq_cm_entry *entry, const char *what)
{
    uint32_t event;
    ssize_t rd;
    for (;;) { /* a signal (fh promote, say) while waiting is not an error: the caller's hook, then on waiting */
        rd = fi_eq_sread(f->eq, &event, entry, sizeof *entry, timeout_ms, 0);
        if (rd != -FI_EINTR && rd != -EINTR)
            break;
        if (fh_fab_interrupted)
            fh_fab_interrupted();
    }
    if (rd == -FI_EAVAIL) {
        struct fi_eq_err_entry err = { 0 };
        fi_eq_readerr(f->eq, &err, 0);
        return fail("%s (provider %s): %s%s%s", what, f->provider, fi_strerror(err.err),
                    err.err == FI_ECONNREFUSED ? ": is the peer's fh-replicate listening there?" : "",
                    err.err == FI_ETIMEDOUT ? ": is the peer reachable?" : "");
    }
    if (rd == -FI_EAGAIN || rd == -FI_ETIMEDOUT)
        return fail("%s (provider %s): no answer within %d ms", what, f->provider, timeout_ms);
    if (rd < 0)
        return fail("%s: fi_eq_sread: %s", what, fi_strerror((int)-rd));
    if (event != want)
        return fail("%s: unexpected connection event %u", what, event);
    return 0;
}

static int open_fabric(fh_fab_t *f)
{
    note_info(f, f->info);
    int rc = fi_fabric(f->info->fabric_attr, &f->fabric, NULL);
    if (rc)
        return fail("fi_fabric (provider %s): %s", f->provider, fi_strerror(-rc));
    struct fi_eq_attr ea = { .wait_obj = FI_WAIT_UNSPEC };
    if ((rc = fi_eq_open(f->fabric, &ea, &f->eq, NULL)))
        return fail("fi_eq_open (provider %s): %s", f->provider, fi_strerror(-rc));
    return 0;
}

int fh_fab_listen(fh_fab_t *f, const char *prov, const char *host, const char *port)
{
    memset(f, 0, sizeof *f);
    if (getinfo(prov, host, port, FI_SOURCE, &f->hints, &f->info))
        return -1;
    if (open_fabric(f))
        return -1;
    int rc = fi_passive_ep(f->fabric, f->info, &f->pep, NULL);
    if (!rc)
        rc = fi_pep_bind(f->pep, &f->eq->fid, 0);
    if (!rc)
        rc = fi_listen(f->pep);
    if (rc)
        return fail("listen on %s:%s (provider %s): %s%s", host ? host : "*", port, f->provider, fi_strerror(-rc),
                    rc == -FI_EADDRINUSE ? ": another process listens there" : "");
    return 0;
}

int fh_fab_accept(fh_fab_t *f, int timeout_ms, int (*before_accept)(fh_fab_t *, void *), void *arg)
{
    struct fi_eq_cm_entry entry;
    uint32_t event = 0; /* an error entry passed over leaves it as it was: never FI_CONNREQ, so the loop reads on */
    ssize_t rd;
    do { /* events of an earlier connection's endpoint (its FI_SHUTDOWN) are passed over */
        rd = fi_eq_sread(f->eq, &event, &entry, sizeof entry, timeout_ms, 0);
        if (rd == -FI_EAGAIN || rd == -FI_ETIMEDOUT || rd == -FI_EINTR || rd == -EINTR)
            return 1; /* nothing yet (or a signal): the caller looks at its flags and calls again */
        if (rd == -FI_EAVAIL) {
            struct fi_eq_err_entry err = { 0 };
            fi_eq_readerr(f->eq, &err, 0);
            if (err.fid != &f->pep->fid)
                continue; /* an error of the old endpoint */
            return fail("waiting for the primary (provider %s): %s", f->provider, fi_strerror(err.err));
        }
        if (rd < 0)
            return fail("waiting for the primary: fi_eq_sread: %s", fi_strerror((int)-rd));
    } while (event != FI_CONNREQ);
    /* the domain and endpoint from the connection request's info */
    fi_freeinfo(f->info);
    f->info = entry.info;
    note_info(f, f->info);
    if (open_ep(f, f->info))
        return -1;
    if (before_accept && before_accept(f, arg))
        return -1;
    int rc = fi_accept(f->ep, NULL, 0);
    if (rc)
        return fail("fi_accept (provider %s): %s", f->provider, fi_strerror(-rc));
    return wait_event(f, FI_CONNECTED, 10000, &entry, "accepting the primary");
}

int fh_fab_event(fh_fab_t *f, uint32_t *event, struct fi_eq_cm_entry *entry, int *err)
{
    memset(entry, 0, sizeof *entry);
    *err = 0;
    ssize_t rd = fi_eq_read(f->eq, event, entry, sizeof *entry, 0);
    if (rd == -FI_EAGAIN)
        return 0;
    if (rd == -FI_EAVAIL) {
        struct fi_eq_err_entry e = { 0 };
        fi_eq_readerr(f->eq, &e, 0);
        entry->fid = e.fid;
        *err = e.err ? e.err : FI_EOTHER;
        return 2;
    }
    if (rd < 0)
        return fail("fi_eq_read (provider %s): %s", f->provider, fi_strerror((int)-rd));
    return 1;
}

int fh_fab_accept_req(fh_fab_t *lis, fh_fab_t *side, struct fi_info *info, int (*before_accept)(fh_fab_t *, void *),
                      void *arg)
{
    memset(side, 0, sizeof *side);
    side->fabric = lis->fabric, side->eq = lis->eq; /* the listener's: shared, not owned */
    side->info = info;
    note_info(side, info);
    if (open_ep(side, info) || (before_accept && before_accept(side, arg)))
        return -1;
    int rc = fi_accept(side->ep, NULL, 0);
    if (rc)
        return fail("fi_accept (provider %s): %s", side->provider, fi_strerror(-rc));
    return 0;
}

void fh_fab_side_close(fh_fab_t *side)
{
    fh_fab_hangup(side);
    if (side->info)
        fi_freeinfo(side->info);
    side->info = NULL, side->fabric = NULL, side->eq = NULL;
}

void fh_fab_adopt(fh_fab_t *f, fh_fab_t *side)
{
    fh_fab_hangup(f);
    struct fid_fabric *fabric = f->fabric;
    struct fid_eq *eq = f->eq;
    struct fid_pep *pep = f->pep;
    struct fi_info *hints = f->hints, *old = f->info;
    memcpy(f, side, sizeof *f);
    f->fabric = fabric, f->eq = eq, f->pep = pep, f->hints = hints;
    if (old)
        fi_freeinfo(old);
    side->info = NULL, side->ep = NULL, side->domain = NULL, side->txcq = side->rxcq = NULL, side->ctl = NULL;
    side->ctl_mr.mr = NULL; /* side's rxop/txop stay: the operations posted before stay named by them */
}

int fh_fab_connect(fh_fab_t *f, const char *prov, const char *host, const char *port, int timeout_ms)
{
    memset(f, 0, sizeof *f);
    if (getinfo(prov, host, port, 0, &f->hints, &f->info))
        return -1;
    if (open_fabric(f) || open_ep(f, f->info))
        return -1;
    int rc = fi_connect(f->ep, f->info->dest_addr, NULL, 0);
    if (rc)
        return fail("fi_connect %s:%s (provider %s): %s", host, port, f->provider, fi_strerror(-rc));
    char what[160];
    snprintf(what, sizeof what, "connecting to the peer at %s:%s", host, port);
    return wait_event(f, FI_CONNECTED, timeout_ms, &(struct fi_eq_cm_entry){ 0 }, what);
}

int fh_fab_send(fh_fab_t *f, const void *msg, size_t len)
{
    if (!f->ntxfree)
        return -FI_EAGAIN;
    int slot = f->txfree[f->ntxfree - 1];
    uint8_t *buf = f->ctl + (size_t)(FH_FAB_RX_SLOTS + slot) * FH_FAB_CTL_SIZE;
    memcpy(buf, msg, len);
    ssize_t rc = fi_send(f->ep, buf, len, f->ctl_mr.desc, 0, &f->txop[slot]);
    if (rc == -FI_EAGAIN)
        return -FI_EAGAIN;
    if (rc)
        return fail("fi_send (provider %s): %s", f->provider, fi_strerror((int)-rc));
    f->ntxfree--;
    return 0;
}

int fh_fab_write(fh_fab_t *f, const void *local, size_t len, const fh_fab_mr_t *lmr, uint64_t raddr, uint64_t rkey,
                 uint64_t data, fh_fab_op_t *op)
{
    op->kind = FH_FAB_OP_WRITE;
    ssize_t rc = fi_writedata(f->ep, local, len, lmr->desc, data, 0, raddr, rkey, op);
    if (rc == -FI_EAGAIN)
        return -FI_EAGAIN;
    if (rc)
        return fail("fi_writedata (%zu bytes, provider %s): %s", len, f->provider, fi_strerror((int)-rc));
    return 0;
}

static int cq_error(fh_fab_t *f, struct fid_cq *cq, const char *which)
{
    struct fi_cq_err_entry err = { 0 };
    fi_cq_readerr(cq, &err, 0);
    if (err.err == FI_ECANCELED || err.err == FI_ENOTCONN || err.err == FI_ECONNRESET) {
        fail("the peer closed the connection (%s completion: %s)", which, fi_strerror(err.err));
        return -2;
    }
    return fail("%s completion error (provider %s): %s (%s)", which, f->provider, fi_strerror(err.err),
                fi_cq_strerror(cq, err.prov_errno, err.err_data, NULL, 0));
}

int fh_fab_poll_tx(fh_fab_t *f, fh_fab_op_t **done, int cap)
{
    struct fi_cq_data_entry e[16];
    int nw = 0;
    for (;;) {
        ssize_t n = fi_cq_read(f->txcq, e, 16);
        if (n == -FI_EAGAIN)
            return nw;
        if (n == -FI_EAVAIL)
            return cq_error(f, f->txcq, "transmit");
        if (n < 0)
            return fail("fi_cq_read (transmit): %s", fi_strerror((int)-n));
        for (ssize_t i = 0; i < n; i++) {
            fh_fab_op_t *op = e[i].op_context;
            if (op && op->kind == FH_FAB_OP_SEND)
                f->txfree[f->ntxfree++] = op->slot;
            else if (op && op->kind == FH_FAB_OP_WRITE && nw < cap)
                done[nw++] = op;
        }
        if (nw >= cap - 16)
            return nw;
    }
}

int fh_fab_poll_rx(fh_fab_t *f, fh_fab_rx_t *out, int cap)
{
    struct fi_cq_data_entry e[16];
    if (cap > 16)
        cap = 16;
    ssize_t n = fi_cq_read(f->rxcq, e, (size_t)cap);
    if (n == -FI_EAGAIN)
        return 0;
    if (n == -FI_EAVAIL)
        return cq_error(f, f->rxcq, "receive");
    if (n < 0)
        return fail("fi_cq_read (receive): %s", fi_strerror((int)-n));
    for (ssize_t i = 0; i < n; i++) {
        fh_fab_op_t *op = e[i].op_context;
        fh_fab_rx_t *r = &out[i];
        memset(r, 0, sizeof *r);
        /* a remote write with data consumed one of our receives (FI_RX_CQ_DATA) or none */
        r->slot = (op && op->kind == FH_FAB_OP_RECV) ? op->slot : -1;
        if (e[i].flags & FI_REMOTE_CQ_DATA) { /* control messages are plain sends: never carry CQ data */
            r->write = 1;
            r->data = e[i].data;
        } else {
            r->msg = f->ctl + (size_t)r->slot * FH_FAB_CTL_SIZE;
            r->len = e[i].len;
        }
    }
    return (int)n;
}

int fh_fab_rx_done(fh_fab_t *f, const fh_fab_rx_t *rx)
{
    return rx->slot >= 0 ? post_recv(f, rx->slot) : 0;
}

int fh_fab_peer_gone(fh_fab_t *f)
{
    uint32_t event;
    struct fi_eq_cm_entry entry;
    ssize_t rd = fi_eq_read(f->eq, &event, &entry, sizeof entry, 0);
    if (rd == -FI_EAVAIL) {
        struct fi_eq_err_entry err = { 0 };
        fi_eq_readerr(f->eq, &err, 0);
        return 1;
    }
    return rd >= 0 && event == FI_SHUTDOWN && (!f->ep || entry.fid == &f->ep->fid); /* not an older endpoint's */
}

/* Close order (fi_domain(3), fi_fabric(3): a domain's or a fabric's objects are released before it; fi_mr(3): an
 * operation queued on a region being closed may touch freed memory): the endpoint first (its posted receives
 * are discarded), then the control region they used, the CQs bound to it, the domain. */
void fh_fab_hangup(fh_fab_t *f)
{
    if (f->ep)
        fi_close(&f->ep->fid);
    fh_fab_dereg(&f->ctl_mr);
    if (f->txcq)
        fi_close(&f->txcq->fid);
    if (f->rxcq)
        fi_close(&f->rxcq->fid);
    if (f->domain)
        fi_close(&f->domain->fid);
    free(f->ctl);
    f->ep = NULL, f->txcq = f->rxcq = NULL, f->domain = NULL, f->ctl = NULL;
    f->ntxfree = 0;
}

/* The connection as fh_fab_hangup closes it, then what the fabric holds: the passive endpoint before the EQ it
 * is bound to, the EQ before the fabric. */
void fh_fab_close(fh_fab_t *f)
{
    fh_fab_hangup(f);
    if (f->pep)
        fi_close(&f->pep->fid);
    if (f->eq)
        fi_close(&f->eq->fid);
    if (f->fabric)
        fi_close(&f->fabric->fid);
    if (f->info)
        fi_freeinfo(f->info);
    if (f->hints)
        fi_freeinfo(f->hints);
    memset(f, 0, sizeof *f);
}
