"""What fh history and fh query share, kept apart so that building the CLI, and fh query, import no pyarrow."""

from ..errors import InputError

TABLES = ("trades", "bbo", "orders", "books")
QUERIES = ("trades", "quotes", "bars", "vwap", "spread", "depth", "movers")  # fh query NAME


class HistoryError(InputError):
    """A user-facing error of fh history / fh query (one line)."""
