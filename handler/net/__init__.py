"""Packets on the wire and in files: pcap reading (pcapfile) and writing (pcapgen), a paced sender in a
network namespace (sender), the MoldUDP64 retransmission server (retransmit), the neighbour table (neigh)."""
