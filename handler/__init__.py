"""fh: the control plane of a kernel-bypass MoldUDP64 / NASDAQ TotalView-ITCH 5.0 feed handler."""

__version__ = "0.1.0"
