"""cffi builder for handler._dpdk, run by meson where libdpdk is found: `python _dpdk_build.py OUT.c`.

The project's own DPDK bindings: just enough of EAL and ethdev for `fh ports`. The generated C includes
DPDK's real headers (pkg-config libdpdk), so a declaration that does not match them fails the build.

Python never sees a DPDK structure: small C helpers copy what `fh ports` shows into one flat struct per port
(fh_dpdk_port_t), so the layout of rte_eth_dev_info and the bitfields of rte_eth_link stay on the C side. Each
helper returns 0 or a negative errno, and reads of a port go on after one of them fails (each part has its
own return code in the struct). EAL state lives in the process that calls fh_dpdk_init: handler.ports runs
it in a child process, which exits after one reading.
"""

import sys

import cffi

CDEF = """
#define FH_DPDK_NAME_MAX 64

typedef struct fh_dpdk_port {
    uint16_t port_id;
    char name[64];            /* rte_eth_dev_get_name_by_port: net_null0, 0000:01:00.0, ... */
    char driver[64];          /* dev_info.driver_name: net_null, net_ice, ... */
    char device[64];          /* the rte_device's name (a PCI address for a PCI NIC) */
    char bus[32];             /* pci, vdev, ... */
    int socket;               /* NUMA socket, -1 when unknown */
    uint8_t mac[6];
    uint16_t max_rx_queues, max_tx_queues;
    uint32_t link_speed;      /* Mb/s; UINT32_MAX: unknown */
    uint8_t link_up, link_full_duplex, link_autoneg;
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
    int rc_name, rc_info, rc_mac, rc_link, rc_stats;   /* 0, or the negative errno of that part */
} fh_dpdk_port_t;

int fh_dpdk_init(int argc, char **argv);           /* rte_eal_init: the number of arguments parsed, or -errno */
int fh_dpdk_cleanup(void);
const char *fh_dpdk_strerror(int err);              /* rte_strerror (DPDK's own codes and errno) */
uint16_t fh_dpdk_port_count(void);                 /* rte_eth_dev_count_avail */
int fh_dpdk_ports(uint16_t *out, int cap);          /* RTE_ETH_FOREACH_DEV: the ids, how many */
int fh_dpdk_port_read(uint16_t port, fh_dpdk_port_t *out);
int fh_dpdk_port_start(uint16_t port, unsigned nb_mbufs);   /* 1 rx + 1 tx queue, promiscuous */
uint32_t fh_dpdk_port_drain(uint16_t port);         /* one rx burst, freed: how many */
int fh_dpdk_port_stop(uint16_t port);               /* stop and close */
"""

SOURCE = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define FH_DPDK_NAME_MAX 64

typedef struct fh_dpdk_port {
    uint16_t port_id;
    char name[64];
    char driver[64];
    char device[64];
    char bus[32];
    int socket;
    uint8_t mac[6];
    uint16_t max_rx_queues, max_tx_queues;
    uint32_t link_speed;
    uint8_t link_up, link_full_duplex, link_autoneg;
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
    int rc_name, rc_info, rc_mac, rc_link, rc_stats;
} fh_dpdk_port_t;

_Static_assert(RTE_ETH_NAME_MAX_LEN <= FH_DPDK_NAME_MAX, "port names are longer than fh_dpdk_port_t.name");

static int fh_dpdk_init(int argc, char **argv)
{
    int n = rte_eal_init(argc, argv);
    return n < 0 ? -(rte_errno ? rte_errno : EINVAL) : n;
}

static int fh_dpdk_cleanup(void)
{
    return rte_eal_cleanup();
}

static const char *fh_dpdk_strerror(int err)
{
    return rte_strerror(err < 0 ? -err : err);
}

static uint16_t fh_dpdk_port_count(void)
{
    return rte_eth_dev_count_avail();
}

static int fh_dpdk_ports(uint16_t *out, int cap)
{
    int n = 0;
    uint16_t p;
    RTE_ETH_FOREACH_DEV(p) {
        if (n < cap)
            out[n] = p;
        n++;
    }
    return n;
}

static void fh_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int fh_dpdk_port_read(uint16_t port, fh_dpdk_port_t *out)
{
    struct rte_eth_dev_info info;
    struct rte_ether_addr mac;
    struct rte_eth_link link;
    struct rte_eth_stats st;

    memset(out, 0, sizeof *out);
    if (!rte_eth_dev_is_valid_port(port))
        return -ENODEV;
    out->port_id = port;
    out->socket = rte_eth_dev_socket_id(port);
    out->rc_name = rte_eth_dev_get_name_by_port(port, out->name);

    memset(&info, 0, sizeof info);
    out->rc_info = rte_eth_dev_info_get(port, &info);
    if (out->rc_info == 0) {
        fh_copy(out->driver, sizeof out->driver, info.driver_name);
        out->max_rx_queues = info.max_rx_queues;
        out->max_tx_queues = info.max_tx_queues;
        if (info.device) {
            const struct rte_bus *bus = rte_dev_bus(info.device);
            fh_copy(out->device, sizeof out->device, rte_dev_name(info.device));
            fh_copy(out->bus, sizeof out->bus, bus ? rte_bus_name(bus) : NULL);
        }
    }

    out->rc_mac = rte_eth_macaddr_get(port, &mac);
    if (out->rc_mac == 0)
        memcpy(out->mac, mac.addr_bytes, sizeof out->mac);

    memset(&link, 0, sizeof link);
    out->rc_link = rte_eth_link_get_nowait(port, &link);
    if (out->rc_link == 0) {
        out->link_speed = link.link_speed;
        out->link_up = link.link_status == RTE_ETH_LINK_UP;
        out->link_full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
        out->link_autoneg = link.link_autoneg == RTE_ETH_LINK_AUTONEG;
    }

    memset(&st, 0, sizeof st);
    out->rc_stats = rte_eth_stats_get(port, &st);
    if (out->rc_stats == 0) {
        out->ipackets = st.ipackets;
        out->opackets = st.opackets;
        out->ibytes = st.ibytes;
        out->obytes = st.obytes;
        out->imissed = st.imissed;
        out->ierrors = st.ierrors;
        out->oerrors = st.oerrors;
        out->rx_nombuf = st.rx_nombuf;
    }
    return 0;
}

static int fh_dpdk_port_start(uint16_t port, unsigned nb_mbufs)
{
    struct rte_eth_conf conf;
    char pool_name[RTE_MEMPOOL_NAMESIZE];
    struct rte_mempool *pool;
    int socket = rte_eth_dev_socket_id(port);
    int rc;

    if (!rte_eth_dev_is_valid_port(port))
        return -ENODEV;
    snprintf(pool_name, sizeof pool_name, "fh_ports_%u", port);
    pool = rte_pktmbuf_pool_create(pool_name, nb_mbufs, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   socket < 0 ? (int)SOCKET_ID_ANY : socket);
    if (!pool)
        return -(rte_errno ? rte_errno : ENOMEM);
    memset(&conf, 0, sizeof conf);
    rc = rte_eth_dev_configure(port, 1, 1, &conf);
    if (rc == 0)
        rc = rte_eth_rx_queue_setup(port, 0, 0, socket < 0 ? (unsigned)SOCKET_ID_ANY : (unsigned)socket, NULL, pool);
    if (rc == 0)
        rc = rte_eth_tx_queue_setup(port, 0, 0, socket < 0 ? (unsigned)SOCKET_ID_ANY : (unsigned)socket, NULL);
    if (rc == 0)
        rc = rte_eth_dev_start(port);
    if (rc == 0)
        rte_eth_promiscuous_enable(port);  /* not every driver can: its answer does not matter here */
    return rc;
}

static uint32_t fh_dpdk_port_drain(uint16_t port)
{
    struct rte_mbuf *m[32];
    uint16_t n = rte_eth_rx_burst(port, 0, m, 32);
    rte_pktmbuf_free_bulk(m, n);
    return n;
}

static int fh_dpdk_port_stop(uint16_t port)
{
    int rc = rte_eth_dev_stop(port);
    int rc2 = rte_eth_dev_close(port);
    return rc ? rc : rc2;
}
"""


def main(out: str) -> None:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("handler._dpdk", SOURCE)
    ffi.emit_c_code(out)


if __name__ == "__main__":
    main(sys.argv[1])
