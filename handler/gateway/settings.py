"""[gateway] in fh.toml: how `fh gateway` publishes a segment to NATS (docs/config.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYS = {"servers", "feed", "book_interval_ms", "book_depth", "conflate_bbo_ms", "status_interval_ms", "stream",
        "stream_replicas", "stream_max_age_s", "max_pending_kb", "spin_us"}
_URL = re.compile(r"^(nats|tls)://[^\s/:]+(:\d{1,5})?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


URL_EXAMPLE = "nats://10.0.0.1:4222"


def is_url(text) -> bool:
    """A NATS server URL the gateway can dial: nats:// or tls://, a host, an optional port 1-65535 (the same check
    for [gateway] servers and --server)."""
    if not isinstance(text, str) or not _URL.match(text):
        return False
    port = text.split("://", 1)[1].partition(":")[2]
    return not port or 1 <= int(port) <= 65535


@dataclass(frozen=True)
class Gateway:
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    feed: str | None = None           # the <feed> token of the subjects; default: the instance name
    book_interval_ms: int = 100       # .book: top-N of each changed book, conflated to this interval
    book_depth: int = 10
    conflate_bbo_ms: int = 0          # 0: every BBO change; else the latest per symbol each interval
    status_interval_ms: int = 1000    # fh.<feed>.status heartbeat
    stream: bool = True               # a JetStream stream over fh.<feed>.> for late joiners
    stream_replicas: int = 1
    stream_max_age_s: int = 86_400
    max_pending_kb: int = 8192        # above this backlog to NATS: BBOs conflate, trades drop (counted)
    spin_us: int = 50                 # the follower's longest spin before it sleeps on the ring (adaptive; 0: never)


def parse(path: str, g: dict, err) -> Gateway:
    """Validate the [gateway] table; err(path, key, value, what) builds the ConfigError."""
    servers = g.get("servers", list(Gateway.servers))
    if isinstance(servers, str):
        servers = [servers]
    if not isinstance(servers, list) or not servers or not all(is_url(s) for s in servers):
        raise err(path, "gateway.servers", servers, "must be a list of NATS URLs, e.g. [\"nats://10.0.0.1:4222\", "
                  "\"nats://10.0.0.2:4222\"]")
    feed = g.get("feed")
    if feed is not None and (not isinstance(feed, str) or not _TOKEN.match(feed)):
        raise err(path, "gateway.feed", feed, "must be 1-32 letters, digits, '-' or '_' (a NATS subject token)")

    def whole(key, lo, hi):
        v = g.get(key, getattr(Gateway, key))
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise err(path, f"gateway.{key}", v, f"must be a whole number from {lo} to {hi}")
        return v

    stream = g.get("stream", True)
    if not isinstance(stream, bool):
        raise err(path, "gateway.stream", stream, "must be true or false")
    return Gateway(servers=tuple(servers), feed=feed, book_interval_ms=whole("book_interval_ms", 1, 3_600_000),
                   book_depth=whole("book_depth", 1, 64), conflate_bbo_ms=whole("conflate_bbo_ms", 0, 3_600_000),
                   status_interval_ms=whole("status_interval_ms", 10, 3_600_000), stream=stream,
                   stream_replicas=whole("stream_replicas", 1, 5), stream_max_age_s=whole("stream_max_age_s", 1, 366 * 86_400),
                   max_pending_kb=whole("max_pending_kb", 64, 1 << 22), spin_us=whole("spin_us", 0, 10_000))
