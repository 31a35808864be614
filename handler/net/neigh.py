"""The next-hop MAC address for a unicast IPv4 destination, from the host's routing and neighbour tables
(pyroute2): the route to the destination gives the gateway (or none: the destination is on the link), and the
neighbour entry of that hop gives its MAC. `fh run` uses it for feed.retransmission.mac when the key is left
out: the data plane sends its retransmission requests from a port the kernel does not drive, so it cannot ARP
itself, and borrows what the kernel already learned (an interface on the same network, or the kernel side of a
bifurcated Mellanox port)."""

from __future__ import annotations

import ipaddress

from ..errors import FhError

# neighbour states (linux/neighbour.h) whose link-layer address can be used: REACHABLE, STALE, DELAY, PROBE,
# PERMANENT. INCOMPLETE, FAILED and NOARP have none (or none worth trusting).
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80


class NeighError(FhError, LookupError):
    """One line: why there is no MAC for the destination. `hop`: the address whose MAC is missing (a gateway,
    or the destination itself)."""

    def __init__(self, message: str, hop: str | None = None):
        super().__init__(message)
        self.hop = hop


def next_hop_mac(dst: str, netns: str | None = None) -> tuple[str, str, str]:
    """(mac, hop, interface): the MAC of the next hop towards the IPv4 address `dst`, the hop's address (a
    gateway, or `dst` itself when it is on the link) and the interface the route leaves by. `netns`: look in
    that network namespace (ip netns add NAME) instead of this process's. Raises NeighError."""
    ipaddress.IPv4Address(dst)
    try:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError:
        raise NeighError("pyroute2 is not installed (pip install pyroute2): it reads the neighbour table") from None
    try:
        ipr = IPRoute(netns=netns) if netns else IPRoute()
    except (OSError, NetlinkError) as e:
        where = f" of network namespace {netns}" if netns else ""
        raise NeighError(f"cannot read the routing table{where}: {e}") from None
    with ipr:
        try:
            routes = list(ipr.route("get", dst=dst))
        except NetlinkError as e:
            raise NeighError(f"no route to {dst} on this host ({e.args[1] if len(e.args) > 1 else e})") from None
        if not routes:
            raise NeighError(f"no route to {dst} on this host")
        r = routes[0]
        if r["type"] != 1:  # RTN_UNICAST; RTN_LOCAL: an address of this host, no neighbour to ask
            raise NeighError(f"{dst} is not reached through a neighbour (route type {r['type']}: an address of "
                             "this host, or unreachable)")
        oif = r.get_attr("RTA_OIF")
        hop = r.get_attr("RTA_GATEWAY") or dst
        links = list(ipr.get_links(oif)) if oif else []
        iface = links[0].get_attr("IFLA_IFNAME") if links else f"ifindex {oif}"
        for n in ipr.get_neighbours(dst=hop, ifindex=oif):
            mac = n.get_attr("NDA_LLADDR")
            if mac and n["state"] & NUD_USABLE:
                return mac.lower(), hop, iface
    via = f" (the gateway to {dst})" if hop != dst else ""
    raise NeighError(f"the neighbour table has no MAC for {hop}{via} on {iface}", hop)


def port_interfaces(spec: str, pci: bool, root: str = "/") -> list[str]:
    """The kernel interfaces behind a DPDK port, against which the route to the request server is checked: a
    NIC's netdevs (a Mellanox on mlx5_core keeps one; a NIC bound to vfio-pci has none), or the interface a
    virtual device is opened on (net_af_packet / net_af_xdp / net_pcap `iface=`). [] when there is none."""
    import os

    if pci:
        d = os.path.join(root, "sys/bus/pci/devices", spec, "net")
        try:
            return sorted(os.listdir(d))
        except OSError:
            return []
    for kv in spec.split(",")[1:]:
        k, _, v = kv.partition("=")
        if k.strip() == "iface" and v.strip():
            return [v.strip()]
    return []
