"""fh history's Parquet read by a real Spark (local[1]) with no conversion: every table through partition
discovery equals what pyarrow reads from the same files, row for row and partition for partition, with the
default files (BYTE_STREAM_SPLIT on integers, DELTA_BINARY_PACKED, zstd) and with --portable ones, through
both of Spark's Parquet readers (vectorized and parquet-java's); aggregates equal DuckDB's; docs/history.md's
Spark examples (python, the timestamp column, and the spark-sql CLI) run as written, with only the root and
the date replaced."""

import os
import re
import shutil
import socket
import subprocess
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, fh, stop_process
from handler import native
from test_history import DATE, day  # noqa: F401  (the held-out 60,000-message day and its history)

if shutil.which("java") is None:
    pytest.skip("needs java: apt-get install openjdk-17-jre-headless (scripts/test.sh does, as root)",
                allow_module_level=True)
pytest.importorskip("pyspark", reason="needs pyspark in .venv (scripts/test.sh installs it)")
try:
    socket.getaddrinfo("localhost", 0)
except socket.gaierror:
    pytest.skip("needs the name localhost to resolve (pyspark binds a server of its own to it): add "
                "'127.0.0.1 localhost' to /etc/hosts", allow_module_level=True)

from pyspark.sql import SparkSession, functions as F  # noqa: E402

# Spark finds its own address from the host's name, and a host whose name does not resolve (a minimal Debian root
# without /etc/hosts: the README's fresh-machine check) stops it before it starts (UnknownHostException).
# Loopback by address, where the session binds anyway; the spark-sql CLI below inherits it.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_LOCAL_HOSTNAME", "127.0.0.1")

pytestmark = pytest.mark.slow  # a JVM, ~20 Spark jobs and a spark-sql CLI run: a minute or more

TABLES = ("trades", "bbo", "orders", "books")
DOCS = ROOT / "docs" / "history.md"
DOCS_ROOT, DOCS_DATE = "/data/history", "2026-01-02"  # what the docs' examples read; the tests put theirs in


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One local Spark for the module: one core, a small heap, no UI, its warehouse in a temporary directory."""
    wh = tmp_path_factory.mktemp("spark")
    s = (SparkSession.builder.master("local[1]").appName("fh-test")
         .config("spark.driver.memory", "512m")
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
         .config("spark.sql.shuffle.partitions", "1")  # tiny aggregates: one task, not 200
         .config("spark.sql.warehouse.dir", str(wh / "warehouse"))
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def portable(day, tmp_path_factory) -> Path:  # noqa: F811
    """The same day written with --portable (dictionary instead of BYTE_STREAM_SPLIT on integers)."""
    path, _, _ = day
    root = tmp_path_factory.mktemp("portable") / "h"
    fh("history", "--itch", path, "--date", DATE, "--out", root, "--snapshot-every", "600", "--portable")
    return root


@pytest.fixture(scope="module")
def thin(tmp_path_factory) -> Path:
    """A day of 1,000 messages: books still one-sided at the close (empty bid or ask arrays), as real days have."""
    d = tmp_path_factory.mktemp("thin")
    native.synth_file(d / "day.itch", 1_000, 40, seed=9192)
    fh("history", "--itch", d / "day.itch", "--date", DATE, "--out", d / "h")
    return d / "h"


@pytest.fixture(scope="module")
def roots(day, portable, thin) -> dict:  # noqa: F811
    return {"default": day[1], "portable": portable, "thin": thin}


@pytest.fixture(scope="module", autouse=True)
def spark_sql_cli(day, tmp_path_factory):  # noqa: F811
    """The docs' spark-sql example run by the spark-sql CLI pyspark ships, on the day's history, started in the
    background before the module's first test: the CLI's own JVM and Hive metastore (Derby, in its working
    directory), most of its minute, start while the other tests run. Yields the process and its directory
    (stdout, stderr); test_docs_spark_sql_example waits for it."""
    import pyspark

    d = tmp_path_factory.mktemp("spark-sql")
    # first a table the example's way but without MSCK REPAIR TABLE: it must read nothing (the docs say why)
    (d / "example.sql").write_text(f"CREATE TABLE unrepaired USING parquet LOCATION '{day[1]}/trades';\n"
                                   "SELECT count(*) FROM unrepaired;\n" + docs_block("sql", day[1]))
    cli = Path(pyspark.__file__).parent / "bin" / "spark-sql"
    with open(d / "stdout", "w") as out, open(d / "stderr", "w") as err:
        proc = subprocess.Popen([cli, "--master", "local[1]", "--driver-memory", "512m",
                                 "--conf", "spark.ui.enabled=false",
                                 "--conf", "spark.driver.bindAddress=127.0.0.1", "--conf", "spark.driver.host=127.0.0.1",
                                 "--conf", f"spark.sql.warehouse.dir={d / 'warehouse'}", "-f", "example.sql"],
                                cwd=d, stdout=out, stderr=err)
    yield proc, d
    stop_process(proc)


def files_rows(root: Path, table: str) -> tuple[Counter, list[dict]]:
    """What pyarrow reads from each file of a table, with date and hour taken from its directory names: rows per
    (date, hour) partition and every row."""
    counts, rows = Counter(), []
    for f in sorted((root / table).glob("date=*/hour=*/*.parquet")):
        date, hour = f.parent.parent.name.removeprefix("date="), int(f.parent.name.removeprefix("hour="))
        t = pq.read_table(f)
        counts[(date, hour)] += t.num_rows
        rows += [{**r, "date": date, "hour": hour} for r in t.to_pylist()]
    return counts, rows


def canonical(rows: list[dict], names: list[str]) -> list[tuple]:
    """Rows as tuples in one column order, lists as tuples, dates as ISO strings, in one deterministic order."""
    out = [tuple(tuple(v) if isinstance(v, list) else v.isoformat() if hasattr(v, "isoformat") else v
                 for v in (r[n] for n in names)) for r in rows]
    return sorted(out, key=repr)


def duck(root: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{root}/{t}/*/*/*.parquet', hive_partitioning = true)")
    return con


def spark_type(t) -> str:
    """The Spark SQL type partition discovery gives a column of Arrow type t (the files' own schema)."""
    if pa.types.is_dictionary(t):  # the Arrow schema the files carry keeps the writer's dictionary strings
        t = t.value_type
    if pa.types.is_list(t):
        return f"array<{spark_type(t.value_type)}>"
    return {pa.int64(): "bigint", pa.int32(): "int", pa.string(): "string"}[t]


@pytest.mark.parametrize("reader", ["vectorized", "parquet-java"])
@pytest.mark.parametrize("files", ["default", "portable"])
@pytest.mark.parametrize("table", TABLES)
def test_every_table_equals_pyarrow(spark, roots, table, files, reader):
    root = roots[files]
    spark.conf.set("spark.sql.parquet.enableVectorizedReader", str(reader == "vectorized").lower())
    try:
        df = spark.read.parquet(str(root / table))
        # the files' columns in their order, then the partition columns, typed by discovery
        schema = pq.ParquetFile(next((root / table).glob("*/*/*.parquet"))).schema_arrow
        want = [(f.name, spark_type(f.type)) for f in schema] + [("date", "date"), ("hour", "int")]
        assert [(f.name, f.dataType.simpleString()) for f in df.schema] == want
        counts, rows = files_rows(root, table)
        got = Counter({(r["date"].isoformat(), r["hour"]): r["count"] for r in df.groupBy("date", "hour").count().collect()})
        assert got == counts and len(counts) > 1
        names = df.columns
        got_rows, want_rows = canonical(df.toArrow().to_pylist(), names), canonical(rows, names)
        assert len(got_rows) == len(want_rows) > 1000
        bad = next((i for i, (g, w) in enumerate(zip(got_rows, want_rows)) if g != w), None)
        assert bad is None, f"{table} row {bad}: spark {got_rows[bad]} != pyarrow {want_rows[bad]}"
    finally:
        spark.conf.unset("spark.sql.parquet.enableVectorizedReader")


@pytest.mark.parametrize("files", ["default", "portable", "thin"])
def test_aggregates_equal_duckdb(spark, roots, files):
    """VWAP, volume and trade count per symbol, and the closing book's best bid and ask per symbol (null for an
    empty side), the same in Spark as in DuckDB, exactly."""
    root = roots[files]
    con = duck(root)
    want = {s: (n, v, vwap) for s, n, v, vwap in con.execute(
        "SELECT symbol, count(*), sum(shares), sum(price * shares) / sum(shares) FROM trades GROUP BY symbol").fetchall()}
    got = {r["symbol"]: (r["n"], r["v"], r["vwap"]) for r in spark.read.parquet(str(root / "trades")).groupBy("symbol").agg(
        F.count("*").alias("n"), F.sum("shares").alias("v"),
        (F.sum(F.col("price") * F.col("shares")) / F.sum("shares")).alias("vwap")).collect()}
    assert got == want and sum(n for n, _, _ in want.values()) == con.execute("SELECT count(*) FROM trades").fetchone()[0]
    assert len(want) > 5

    want = dict(((s, (b, a)) for s, b, a in con.execute(
        "SELECT symbol, bid_price[1], ask_price[1] FROM books WHERE kind = 'close'").fetchall()))
    got = {r["symbol"]: (r["bb"], r["ba"]) for r in spark.read.parquet(str(root / "books")).where("kind = 'close'")
           .select("symbol", F.get("bid_price", 0).alias("bb"), F.get("ask_price", 0).alias("ba")).collect()}
    assert got == want and len(want) > 10
    if files == "thin":  # what the thin day is for: sides that are empty at the close
        assert any(b is None for b, _ in want.values()) and any(a is None for _, a in want.values())


def docs_block(lang: str, root: Path) -> str:
    """The `lang` example of docs/history.md's Spark section (the one block reading DOCS_ROOT), reading `root`
    on DATE."""
    section = DOCS.read_text().split("\n## Spark\n", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(rf"```{lang}\n(.*?)```", section, re.S) if DOCS_ROOT in b]
    assert len(blocks) == 1 and DOCS_DATE in blocks[0], f"docs/history.md's Spark {lang} example changed shape"
    return blocks[0].replace(DOCS_ROOT, str(root)).replace(DOCS_DATE, DATE)


def shown(out: str) -> list[list[list[str]]]:
    """The tables DataFrame.show() printed: for each, its rows (the header first) as lists of cell strings."""
    tables, cur = [], None
    for line in out.splitlines():
        if line.startswith("+-"):
            if cur is None:
                cur = []
                tables.append(cur)
        elif line.startswith("|"):
            cur.append([c.strip() for c in line.strip("|").split("|")])
        else:
            cur = None
    return tables


@pytest.mark.parametrize("files", ["default", "thin"])
def test_docs_python_example(spark, roots, files, capsys):
    """The python example, run as written: AAPL's VWAP in hour 10 and the closing books' best bid and ask, as
    DuckDB computes them (on the thin day, the one-sided books show NULL, they do not fail the query)."""
    root = roots[files]
    exec(compile(docs_block("python", root), "docs/history.md", "exec"), {})
    vwap, close = shown(capsys.readouterr().out)
    con = duck(root)
    want = con.execute("SELECT symbol, sum(price * shares) / sum(shares) / 1e4 FROM trades "
                       f"WHERE date = DATE '{DATE}' AND symbol = 'AAPL' AND hour = 10 GROUP BY symbol").fetchall()
    assert vwap[0] == ["symbol", "vwap"] and [(s, float(v)) for s, v in vwap[1:]] == want
    assert want or files == "thin"
    books = {s: (b, a) for s, b, a in con.execute(
        "SELECT symbol, bid_price[1], ask_price[1] FROM books WHERE kind = 'close'").fetchall()}
    assert close[0] == ["symbol", "best_bid", "best_ask"] and len(close) == 1 + min(20, len(books))
    cell = lambda v: None if v == "NULL" else int(v)
    assert all(books[s] == (cell(b), cell(a)) for s, b, a in close[1:])


def test_docs_time_column(spark, roots):
    """The docs' timestamp column is fh query's `time` (DuckDB: the date plus ts_ns, to the microsecond) on every
    trade, under a session time zone that is not UTC."""
    section = DOCS.read_text().split("\n## Spark\n", 1)[1].split("\n## ", 1)[0]
    expr = re.search(r'```python\ntrades\.withColumn\("time", F\.expr\("([^"]+)"\)\)\n```', section).group(1)
    root = roots["default"]
    want = dict(duck(root).execute("SELECT seq, make_timestamp(epoch_us(CAST(date AS TIMESTAMP)) + ts_ns // 1000) "
                                   "FROM trades").fetchall())
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        got = {r["seq"]: r["time"] for r in spark.read.parquet(str(root / "trades"))
               .select("seq", F.expr(expr).alias("time")).collect()}
    finally:
        spark.conf.unset("spark.sql.session.timeZone")
    assert got == want and len(want) > 1000


def test_docs_spark_sql_example(spark_sql_cli, day):  # noqa: F811
    """The spark-sql example (CREATE TABLE ... USING parquet LOCATION, MSCK REPAIR TABLE, a query) gives the
    volume per symbol in hour 10 as DuckDB has it; the same table without the repair reads no row."""
    proc, d = spark_sql_cli
    assert proc.wait(timeout=600) == 0, (d / "stderr").read_text()[-3000:]
    unrepaired, *rows = (d / "stdout").read_text().splitlines()
    assert unrepaired == "0"
    got = sorted((s, int(v)) for s, v in (line.split("\t") for line in rows))
    want = sorted(duck(day[1]).execute(f"SELECT symbol, sum(shares) FROM trades WHERE date = DATE '{DATE}' AND hour = 10 "
                                       "GROUP BY symbol").fetchall())
    assert got == want and len(want) > 5
