/* fabric.h: the replication transport, a thin layer over libfabric (FI_EP_MSG, one connection).
 *
 * One code path for every provider: `verbs` (RoCE / InfiniBand: one-sided RDMA writes with immediate data)
 * on hardware, `tcp` where no RDMA NIC exists (loopback in tests). The layer asks for what the primary and
 * the standby need (FI_MSG | FI_RMA, remote CQ data) and copes with what a provider demands in return:
 *   - mode FI_CONTEXT: every operation's context is an fh_fab_op_t whose first member is a struct fi_context;
 *   - mode FI_RX_CQ_DATA: a write with remote CQ data consumes a posted receive, which the caller reposts
 *     (fh_fab_rx_t.repost says so);
 *   - mr_mode FI_MR_LOCAL (local buffers registered and their descriptors passed), FI_MR_VIRT_ADDR (remote
 *     addresses are virtual addresses, else offsets), FI_MR_ALLOCATED, FI_MR_PROV_KEY (the key the provider
 *     chose is sent to the peer), FI_MR_ENDPOINT (regions bound to the endpoint and enabled);
 *   - separate transmit and receive completion queues; the standby's domain is opened from the connection
 *     request's info.
 * Errors: -1 and a one-line message (fh_fab_err) naming the call, the provider and the fix where one exists. */
#ifndef FH_REPL_FABRIC_H
#define FH_REPL_FABRIC_H

#include <stddef.h>
#include <stdint.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define FH_FAB_CTL_SIZE 64  /* a control message (hello, ack, heartbeat, refusal, bye) */
#define FH_FAB_RX_SLOTS 64  /* receives posted at once */
#define FH_FAB_TX_SLOTS 32  /* control sends in flight at once */

typedef struct fh_fab_op {
    struct fi_context ctx; /* first: FI_CONTEXT */
    int kind;              /* FH_FAB_OP_* */
    int slot;
} fh_fab_op_t;
#define FH_FAB_OP_RECV 1
#define FH_FAB_OP_SEND 2
#define FH_FAB_OP_WRITE 3

typedef struct fh_fab_mr {
    struct fid_mr *mr;
    void *desc;   /* for local operations (FI_MR_LOCAL), else NULL */
    uint64_t key; /* for the peer */
    uint64_t addr; /* what the peer passes as remote address of the region's start: virtual or 0 */
} fh_fab_mr_t;

typedef struct fh_fab {
    struct fi_info *hints, *info; /* info: the endpoint's (the connection request's on the standby) */
    struct fid_fabric *fabric;
    struct fid_eq *eq;
    struct fid_pep *pep;
    struct fid_domain *domain;
    struct fid_ep *ep;
    struct fid_cq *txcq, *rxcq;
    uint64_t mr_mode, mode;
    size_t cq_data_size;
    char provider[32], fabric_name[64], domain_name[64];
    /* control messages: registered rx and tx slots */
    uint8_t *ctl;          /* FH_FAB_RX_SLOTS + FH_FAB_TX_SLOTS slots of FH_FAB_CTL_SIZE */
    fh_fab_mr_t ctl_mr;
    fh_fab_op_t rxop[FH_FAB_RX_SLOTS], txop[FH_FAB_TX_SLOTS];
    int txfree[FH_FAB_TX_SLOTS], ntxfree;
} fh_fab_t;

/* One receive-side completion. */
typedef struct fh_fab_rx {
    int write;          /* 1: a remote write with CQ data arrived (data valid); 0: a control message (msg, len) */
    uint64_t data;
    const uint8_t *msg;
    size_t len;
    int slot;           /* the receive it consumed, -1 none; reposted by fh_fab_rx_done */
} fh_fab_rx_t;

const char *fh_fab_err(void);
/* Called, when set, each time a signal interrupts a blocking wait for a connection event (fh_fab_connect; the
 * accepted connection's establishment in fh_fab_accept); the wait then goes on. fh-replicate re-reads its witness
 * key there at SIGHUP: a connect held by a silent peer (TCP's SYN retries: minutes) must not hold a key rotation. */
extern void (*fh_fab_interrupted)(void);
/* Set the message fh_fab_err returns; -1. */
int fh_fab_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The devices a provider offers (fi_getinfo, FI_EP_MSG with RMA): writes a JSON list to out. provider: "auto",
 * "verbs" or "tcp"; NULL: all. Number found, or -1. */
int fh_fab_list(const char *provider, char *out, size_t cap);
/* Standby: listen on host:port (host may be NULL), accept a connection within timeout_ms (-1: forever): 0
 * connected, 1 none yet (timeout or a signal: call again), -1 error. After fh_fab_hangup it accepts the next. */
int fh_fab_listen(fh_fab_t *f, const char *provider, const char *host, const char *port);
int fh_fab_accept(fh_fab_t *f, int timeout_ms, int (*before_accept)(fh_fab_t *, void *), void *arg);
/* The listener's EQ (its passive endpoint and every endpoint accepted from it share it), not waiting: 1 an event
 * (*event, entry; entry->fid: whose, the passive endpoint's for FI_CONNREQ, entry->info then the request's), 2 an
 * error entry (entry->fid whose, *err), 0 none, -1 error. Lets a listener with a connection take a second one. */
int fh_fab_event(fh_fab_t *f, uint32_t *event, struct fi_eq_cm_entry *entry, int *err);
/* A second connection beside lis's (a connection request read by fh_fab_event; side takes info): its own domain,
 * queues and endpoint on lis's fabric and EQ, before_accept run, accepted; its FI_CONNECTED comes on that EQ.
 * 0, or -1 (close side with fh_fab_side_close). */
int fh_fab_accept_req(fh_fab_t *lis, fh_fab_t *side, struct fi_info *info, int (*before_accept)(fh_fab_t *, void *),
                      void *arg);
void fh_fab_side_close(fh_fab_t *side);
/* f's connection closed (its regions deregistered first by the caller) and side's taken in its place, on f's
 * listener. side's memory must stay as it is while f lives: the receives posted before name its operations. */
void fh_fab_adopt(fh_fab_t *f, fh_fab_t *side);
/* Primary: connect to host:port. */
int fh_fab_connect(fh_fab_t *f, const char *provider, const char *host, const char *port, int timeout_ms);
/* Register buf for access (FI_WRITE, FI_REMOTE_WRITE, ...): binds and enables it for FI_MR_ENDPOINT. */
int fh_fab_reg(fh_fab_t *f, void *buf, size_t len, uint64_t access, fh_fab_mr_t *out);
void fh_fab_dereg(fh_fab_mr_t *m);
/* Send a control message (<= FH_FAB_CTL_SIZE): 0, -FI_EAGAIN (no free slot or queue full: progress, retry). */
int fh_fab_send(fh_fab_t *f, const void *msg, size_t len);
/* One-sided write of len bytes at local (registered as lmr) to the peer's region at offset off, with CQ data. */
int fh_fab_write(fh_fab_t *f, const void *local, size_t len, const fh_fab_mr_t *lmr, uint64_t raddr, uint64_t rkey,
                 uint64_t data, fh_fab_op_t *op);
/* Transmit completions: up to cap, ops of finished writes in done[]; sends free their slots themselves.
 * Returns the number of write completions, -2 when the peer has closed the connection (operations canceled),
 * or -1 on another error completion. */
int fh_fab_poll_tx(fh_fab_t *f, fh_fab_op_t **done, int cap);
/* Receive completions: up to cap. Returns how many, 0 none, -2 the peer has closed the connection, -1 error.
 * Call fh_fab_rx_done on each. */
int fh_fab_poll_rx(fh_fab_t *f, fh_fab_rx_t *out, int cap);
int fh_fab_rx_done(fh_fab_t *f, const fh_fab_rx_t *rx);
/* 1 if the peer has shut the connection down (FI_SHUTDOWN on the EQ), else 0. */
int fh_fab_peer_gone(fh_fab_t *f);
/* Standby: close the connection (endpoint, queues, domain; regions on the domain deregistered first by the
 * caller), keep listening: fh_fab_accept takes the next primary. */
void fh_fab_hangup(fh_fab_t *f);
void fh_fab_close(fh_fab_t *f);

#endif
