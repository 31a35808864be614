#!/usr/bin/env python3
"""Follow fh's live market data over NATS (published by `fh gateway`), or replay the day so far from its
JetStream stream. Prints one JSON line per message; with --latency, the publish-stamp -> here latency
percentiles at the end (same host clocks: the gateway turns the data plane's TSC stamp into wall time).

    python examples/nats_subscriber.py --server nats://127.0.0.1:4222 --feed fh --symbol AAPL
    python examples/nats_subscriber.py --feed fh --kind trade --replay        # the day so far, then live
"""

import argparse
import asyncio
import json
import re
import signal
import sys
import time


async def main(a) -> int:
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(servers=a.server, max_reconnect_attempts=-1)
    subject = f"fh.{a.feed}.status" if a.kind == "status" else f"fh.{a.feed}.{a.symbol}.{a.kind}"
    lat, gwlat, count = [], [], 0
    done = asyncio.Event()

    stamps = re.compile(rb'"pub_ns":(\d+)|"gw_ns":(\d+)')

    async def on_msg(m):
        nonlocal count
        now = time.time_ns()
        count += 1
        if a.latency:  # the two stamps only, without decoding the whole message
            for pub, gw in stamps.findall(m.data):
                (lat if pub else gwlat).append(now - int(pub or gw))
        if a.count and count >= a.count:
            done.set()
        if not a.quiet:
            print(json.dumps({"subject": m.subject, **json.loads(m.data)}), flush=True)

    if a.replay:  # an ordered push consumer from the first message the stream holds
        await nc.jetstream().subscribe(subject, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    else:
        await nc.subscribe(subject, cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=-1)
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, done.set)
    try:
        await asyncio.wait_for(done.wait(), a.seconds) if a.seconds else await done.wait()
    except asyncio.TimeoutError:
        pass
    for what, v in (("publish stamp", lat), ("gateway", gwlat)):
        if a.latency and v:  # publish stamp: the data plane's TSC stamp, as wall time (the gateway converts it)
            v.sort()
            pct = lambda q: v[min(len(v) - 1, int(q * len(v)))] / 1000
            print(f"{len(v)} messages: {what} -> subscriber p50 {pct(0.5):.1f} us, p99 {pct(0.99):.1f} us, "
                  f"p99.9 {pct(0.999):.1f} us, max {v[-1] / 1000:.1f} us", file=sys.stderr)
    try:
        await asyncio.wait_for(nc.drain(), 5)
    except BaseException:  # a server too busy to answer the drain in time: the figures above stand anyway
        try:
            await asyncio.wait_for(nc.close(), 5)
        except BaseException:
            pass
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", action="append", default=None, help="NATS URL (repeat for a cluster)")
    p.add_argument("--feed", default="fh", help="the feed token ([gateway] feed, default the instance name)")
    p.add_argument("--symbol", default="*", help="a symbol, or * for all")
    p.add_argument("--kind", choices=("bbo", "trade", "book", "status", "*"), default="bbo")
    p.add_argument("--replay", action="store_true", help="from the start of the JetStream stream")
    p.add_argument("--count", type=int, default=0, help="stop after this many messages")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long")
    p.add_argument("--latency", action="store_true", help="print latency percentiles at the end")
    p.add_argument("--quiet", action="store_true", help="do not print the messages")
    a = p.parse_args()
    a.server = a.server or ["nats://127.0.0.1:4222"]
    sys.exit(asyncio.run(main(a)))
