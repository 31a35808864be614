#!/usr/bin/env bash
# Set up (scripts/setup.sh), then replay the bundled MoldUDP64 capture (A and B lines) through the real
# DPDK data plane (net_pcap: no NIC and no hugepages needed), read the books it published in shared
# memory, show the deepest five, and check them all against the reference model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
pcap=pcaps/synth-ab-40k.pcap
echo "== fh replay $pcap --dump-books /tmp/fh-demo-books.jsonl --depth 5"
fh replay "$pcap" --dump-books /tmp/fh-demo-books.jsonl --depth 5
python - /tmp/fh-demo-books.jsonl <<'PY'
import json, sys
books = [json.loads(l) for l in open(sys.argv[1])]
print(f"{len(books)} instruments with a non-empty book; the five deepest:")
for b in sorted(books, key=lambda b: -(len(b["bids"]) + len(b["asks"])))[:5]:
    print(f"\n{b['symbol']} (locate {b['locate']})")
    print(f"  {'bid orders':>10} {'shares':>8} {'bid':>10} | {'ask':<10} {'shares':<8} {'orders':<6}")
    for i in range(max(len(b["bids"]), len(b["asks"]))):
        bid = b["bids"][i] if i < len(b["bids"]) else None
        ask = b["asks"][i] if i < len(b["asks"]) else None
        left = f"{bid[2]:>10} {bid[1]:>8} {bid[0] / 1e4:>10.4f}" if bid else " " * 30
        right = f"{ask[0] / 1e4:<10.4f} {ask[1]:<8} {ask[2]:<6}" if ask else ""
        print(f"  {left} | {right}")
print("\nAll books as JSON lines: /tmp/fh-demo-books.jsonl")
PY
echo
echo "== fh verify $pcap"
fh verify "$pcap" | tail -n 1
