"""`fh gateway`: publish a running instance's books and events to NATS (see handler/gateway/gateway.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys

from ..cli.argtypes import _given


def _server(text: str) -> str:
    """An argparse type: --server, a NATS URL as [gateway] servers takes it (notaurl was an IndexError, nats://:abc
    a ValueError: tracebacks)."""
    import argparse

    from .settings import URL_EXAMPLE, is_url

    if not is_url(text):
        raise argparse.ArgumentTypeError(f"{text!r} must be a NATS URL (nats:// or tls://, a host, a port 1-65535), "
                                         f"e.g. {URL_EXAMPLE}")
    return text


def cmd_gateway(a) -> int:
    from .gateway import Gateway, GatewayError
    from .settings import Gateway as Settings

    s, name = Settings(), a.name
    if a.config:
        from ..config import load

        cfg = load(a.config)
        s, name = cfg.gateway or s, a.name or cfg.name
        segment = a.segment or cfg.segment
    else:
        name = name or "fh"
        segment = a.segment or name
    over = {k: v for k, v in {"servers": tuple(a.server) if a.server else None, "feed": a.feed,
                               "conflate_bbo_ms": a.conflate_bbo_ms, "book_interval_ms": a.book_interval_ms,
                               "stream_replicas": a.stream_replicas, "stream": False if a.no_stream else None}.items()
            if v is not None}
    s = dataclasses.replace(s, **over)
    feed = s.feed or name

    async def main():
        try:
            gw = Gateway(segment, s, feed, start="oldest" if a.from_start else "head",
                         log=lambda t: print(f"fh gateway: {t}", file=sys.stderr))
        except Exception as e:
            from ..shm import ShmError

            if isinstance(e, ShmError):
                raise GatewayError(str(e)) from None
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await gw.connect()
        print(f"fh gateway: {segment} -> {', '.join(s.servers)} as fh.{feed}.*"
              + (f" (JetStream stream {gw.stream_name}, replicas {s.stream_replicas})" if s.stream else ""),
              file=sys.stderr, flush=True)
        if a.ready_file:
            with open(a.ready_file, "w") as f:
                f.write("ready\n")
        return await gw.run(idle_timeout=a.idle_timeout, stop=stop)

    res = asyncio.run(main())
    if a.json:
        print(json.dumps(res))
    else:
        shown = {k: v for k, v in res["counters"].items() if v}
        print("fh gateway: " + ", ".join(f"{k}={v}" for k, v in shown.items()), file=sys.stderr)
    return 0


def register(sub) -> None:
    from ..ui import HelpFormatter, add_json_flag, examples
    from .settings import Gateway as Settings

    d = Settings()
    g = sub.add_parser("gateway", help="publish the books and events of a running instance to NATS (JetStream for late joiners)",
                       formatter_class=HelpFormatter,
                       description="Follow a segment and publish fh.<feed>.<symbol>.bbo|trade|book and fh.<feed>.status "
                                   "to NATS; see docs/history.md",
                       epilog=examples("fh gateway --name nasdaq --server nats://127.0.0.1:4222",
                                       "fh gateway --config /etc/fh/nasdaq.toml",
                                       "fh gateway --name lab --server nats://a:4222 --server nats://b:4222 --no-stream"))
    g.add_argument("--config", metavar="FILE", type=_given("an fh.toml"),
                   help="fh.toml: the instance and its [gateway] table")
    g.add_argument("--name", help="instance name (segment /dev/shm/fh-NAME; default: the config's, else fh)")
    g.add_argument("--segment", metavar="PATH", help="the segment file, if not /dev/shm/fh-NAME")
    g.add_argument("--server", action="append", metavar="URL", type=_server,
                   help="a NATS server (repeat for a cluster); overrides [gateway] servers (default: [gateway]'s, "
                        f"else {' '.join(d.servers)})")
    g.add_argument("--feed", help="the <feed> subject token (default: the instance name)")
    g.add_argument("--conflate-bbo-ms", type=int, metavar="MS",
                   help=f"publish the latest BBO per symbol this often, 0: every change (default: [gateway]'s, "
                        f"else {d.conflate_bbo_ms})")
    g.add_argument("--book-interval-ms", type=int, metavar="MS",
                   help=f".book: at most once per book per this interval (default: [gateway]'s, else {d.book_interval_ms})")
    g.add_argument("--stream-replicas", type=int, metavar="N",
                   help=f"JetStream replicas of the stream (default: [gateway]'s, else {d.stream_replicas})")
    g.add_argument("--no-stream", action="store_true", help="no JetStream stream")
    g.add_argument("--from-start", action="store_true", help="begin at the oldest event the ring holds (default: the next one)")
    g.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                   help="stop after this long without an event (default: never)")
    g.add_argument("--ready-file", metavar="PATH", help="write this file once connected and following")
    add_json_flag(g, "fh gateway")
    g.set_defaults(func=cmd_gateway)
