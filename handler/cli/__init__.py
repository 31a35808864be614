"""The `fh` command line: the parser and main (main.py) and the commands by family (dataplane: replay, verify,
pcap; host: plan, check, ports; ops: status, stop, metrics). Each family module has a register(subparsers)."""
