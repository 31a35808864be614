"""Local nats-server processes (the Debian package) for tests, benchmarks and labs: one node or a cluster
on loopback with JetStream, each node with its own store directory. Nothing here is used in production,
where the NATS cluster is the firm's own."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    http_port: int
    store: Path
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=0.5) as r:
                return json.load(r).get("status") == "ok"
        except Exception:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Cluster:
    nodes: list[Node]
    root: Path
    name: str
    keep: bool = False
    extra: list[str] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start_node(self, n: Node) -> None:
        routes = ",".join(f"nats-route://127.0.0.1:{m.cluster_port}" for m in self.nodes if m is not n)
        args = ["nats-server", "-a", "127.0.0.1", "-p", str(n.port), "-m", str(n.http_port), "-js", "-sd", str(n.store),
                "--server_name", n.name, *self.extra]
        if len(self.nodes) > 1:
            args += ["--cluster_name", self.name, "--cluster", f"nats://127.0.0.1:{n.cluster_port}", "--routes", routes]
        n.log = self.root / f"{n.name}.log"
        n.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(n.log, "wb"))

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            while not n.healthy():
                if n.proc.poll() is not None:
                    raise RuntimeError(f"nats-server {n.name} exited {n.proc.returncode}: "
                                       f"{n.log.read_text(errors='replace')[-500:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {n.name} not healthy after {timeout}s; see {n.log}")
                time.sleep(0.1)

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_cluster(size: int = 3, root: str | Path | None = None, timeout: float = 30.0) -> Cluster:
    """size nats-server nodes with JetStream on loopback ports, routed to one another; waits until every
    node reports healthy. Stop with Cluster.stop() (or use it as a context manager)."""
    if shutil.which("nats-server") is None:
        raise RuntimeError("nats-server is not installed: apt-get install nats-server (scripts/setup.sh does)")
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="fh-nats-"))
    name = f"fh-{uuid.uuid4().hex[:8]}"
    nodes = []
    for i in range(size):
        store = root / f"n{i + 1}"
        store.mkdir(parents=True, exist_ok=True)
        nodes.append(Node(f"n{i + 1}", free_port(), free_port(), free_port(), store))
    c = Cluster(nodes, root, name)
    try:
        for n in nodes:
            c.start_node(n)
        c.wait_healthy(timeout)
    except BaseException:
        c.stop()
        raise
    return c
