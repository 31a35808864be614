"""The day's history as Parquet (pyarrow, zstd, hive partitions), queried through DuckDB.

columns: messages -> column chunks (C engine + numpy over the ITCH layouts); source: where messages come
from (daily file, pcap, a segment's event ring) and the build loop; writer: the partitioned, atomic Parquet
tree; query: DuckDB over it; cli: `fh history` and `fh query`.
"""
