"""`fh bench`: the book engine (engine.py), the data plane (dataplane.py), gap recovery (recovery.py), restart
preparation (restart.py)."""


def add_day_options(b, positive, *, messages: int, instruments: int, mtu: int | None = None) -> None:
    """The options of the synthetic day a bench command generates (fh synth itch's): --messages, --instruments
    and --seed, and with `mtu` the datagram size limit of its capture (--mtu). `positive`: the CLI's
    argument type."""
    from ..cli.argtypes import U64_MAX, _bounded

    b.add_argument("--messages", type=_bounded(1, U64_MAX), default=messages, help="messages of the generated day")
    b.add_argument("--instruments", type=positive, default=instruments, help="instruments of the generated day")
    b.add_argument("--seed", type=_bounded(0, U64_MAX), default=1, help="seed of the generated day")
    if mtu is not None:
        b.add_argument("--mtu", type=_bounded(128, 9216), default=mtu, help="datagram size limit of the capture")
