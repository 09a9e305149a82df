"""Benchmark every stage from item embeddings to published SIDs at 100k to 10M items.

Runbook (from the repository root, after ``bash scripts/install.sh``; one Spark process at a
time, because the run keeps its own Derby metastore):

    .venv/bin/python benchmarks/scale.py --items 100000              # 64 dims, suffix strategy
    .venv/bin/python benchmarks/scale.py --items 1000000
    .venv/bin/python benchmarks/scale.py --items 10000000
    .venv/bin/python benchmarks/scale.py --items 1000000 --dim 256 --strategy ecm
    .venv/bin/python benchmarks/scale.py --render-only               # rewrite the page from saved records

The generator writes a synthetic catalog as Parquet, one chunk of ``--chunk-rows`` items at
a time, so it never keeps the whole catalog in memory. Embeddings are unit-norm draws from a
Gaussian mixture whose component weights fall off as a power law, and each item gets a
Zipf-distributed popularity. Co-occurrence pairs join two items of the same mixture
component, written as two-item sessions in the interactions layout of
``catalog.interactions_path``.

The pipeline then runs with the project's stage functions in the order of
``pipelines.build``: the ``item_embeddings`` Delta table, the training sample, training in
a Ray actor, assign, resolve, the ``item_sids`` Delta table and the corpus metrics. Ingest,
embed, quarantine, MLflow and the quality gate are not part of this benchmark.

Per stage the script records wall time, the CPU time of the whole process tree, rows per
second, the 1-minute load average and the peak resident memory (RSS, and its anonymous part)
of the driver (this Python process and the Spark JVM) and of the workers (Spark's Python
workers and the Ray actors), sampled from /proc every ``--sample-seconds``. After Spark and
Ray stop, it encodes the catalog's vectors (all, or the first ``--compare-items``) with the
trained codebooks on one thread twice more: with ``ResidualKMeans.encode`` and with bare
faiss (one ``IndexFlatL2`` search per level). It also measures NumPy's float32 matmul peak
on one thread. Each run is saved as JSON under ``<work-dir>/records`` after every stage, so
a stopped run keeps what it finished, and the page section is rendered from every saved record.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import write_section  # noqa: E402

SECTION_START = "<!-- scale:start -->"
SECTION_END = "<!-- scale:end -->"
MODEL_NAME = "synthetic-gaussian-mixture"
# The SID string's level letters, as in pipelines.build.
SID_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Stages of the pipeline itself, as opposed to generating the catalog and starting Spark and Ray.
PIPELINE_STAGES = ("item_embeddings", "train_sample", "train", "assign", "resolve", "item_sids", "corpus_metrics")
# Process groups of the process sampler, in the order the page shows them.
DRIVER_GROUPS = ("driver_python", "driver_jvm")
WORKER_GROUPS = ("spark_python_workers", "ray_workers")
ALL_GROUPS = DRIVER_GROUPS + WORKER_GROUPS + ("ray_runtime", "other")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalog items (default 1,000,000)")
    parser.add_argument("--dim", type=int, choices=(64, 256), default=64, help="embedding dimension (default 64)")
    parser.add_argument("--clusters", type=int, default=2000, help="mixture components (default 2000)")
    parser.add_argument("--cluster-exponent", type=float, default=0.8,
                        help="component weight of rank r is proportional to r**-exponent (default 0.8)")
    parser.add_argument("--noise", type=float, default=0.8,
                        help="spread of items around their component, relative to its unit-norm center (default 0.8)")
    parser.add_argument("--zipf", type=float, default=1.8,
                        help="exponent a > 1 of the Zipf distribution of popularity counts (default 1.8)")
    parser.add_argument("--pairs-per-item", type=float, default=1.0,
                        help="co-occurrence pairs generated per item (default 1.0)")
    parser.add_argument("--chunk-rows", type=int, default=100_000,
                        help="items generated, written and compared per chunk (default 100,000)")
    parser.add_argument("--strategy", default="suffix", choices=("suffix", "forge_knn", "forge_random", "ecm", "rrs"),
                        help="resolve.strategy (default suffix)")
    parser.add_argument("--config", default=str(ROOT / "conf" / "local.yaml"),
                        help="pipeline config (default conf/local.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (YAML syntax), e.g. --set quantize.train_sample_size=500000")
    parser.add_argument("--compare-items", type=int, default=None,
                        help="vectors encoded by the bare encoders (default: every item)")
    parser.add_argument("--sample-seconds", type=float, default=0.5,
                        help="interval of the memory and CPU samples (default 0.5 s)")
    parser.add_argument("--work-dir", default="/tmp/scale",
                        help="scratch folder for the catalog, warehouse and run records (default /tmp/scale)")
    parser.add_argument("--keep-data", action="store_true", help="keep the catalog and warehouse after the run")
    parser.add_argument("--no-results", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the RESULTS.md section from the saved records and exit")
    return parser.parse_args(argv)


# --- process sampling ------------------------------------------------------------------------

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def _descendants(root: int) -> list[tuple[int, int]]:
    """Return (pid, parent pid) of ``root`` and every process below it, from /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read(f"/proc/{entry.name}/stat")
        if stat is None:
            continue
        # The command name in brackets may contain spaces, so split after its closing bracket.
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [(root, 0)]
    while stack:
        pid, parent = stack.pop()
        found.append((pid, parent))
        stack.extend((child, pid) for child in children.get(pid, ()))
    return found


def _classify(pid: int, own_pid: int, cmdline: str) -> str:
    if pid == own_pid:
        return "driver_python"
    if "org.apache.spark.deploy.SparkSubmit" in cmdline:
        return "driver_jvm"
    if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
        return "spark_python_workers"
    if cmdline.startswith("ray::"):
        # Idle pool workers wait for tasks; actors and running tasks carry their class or function name.
        return "ray_runtime" if cmdline.startswith("ray::IDLE") else "ray_workers"
    if "ray" in cmdline:
        return "ray_runtime"
    return "other"


class ProcessSampler(threading.Thread):
    """Background thread that samples memory and CPU time of this process tree by group.

    Memory: each group's value is the sum of the RSS (and of the anonymous part of the RSS,
    under ``<group>/anon``) of its processes at one sample, so pages that forked workers
    share count once per process. ``begin`` resets the peaks and ``end`` returns them in
    bytes, with ``total`` the largest sum over all groups.

    CPU: the user + system seconds of every process seen, kept after the process exits, so
    the work of short-lived Spark and Ray workers counts up to their last sample.
    """

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.own_pid = os.getpid()
        self._lock = threading.Lock()
        self._peaks: dict[str, int] = {}
        # (pid, start time) -> (group, CPU seconds at the last sample)
        self._cpu: dict[tuple[int, str], tuple[str, float]] = {}
        self._halt = threading.Event()

    def sample(self) -> dict[str, int]:
        """Take one sample; update the CPU table and return the memory of each group."""
        usage = dict.fromkeys(ALL_GROUPS, 0)
        anonymous = dict.fromkeys(ALL_GROUPS, 0)
        cpu = {}
        groups: dict[int, str] = {}
        for pid, parent in _descendants(self.own_pid):
            stat = _read(f"/proc/{pid}/stat")
            cmdline = _read(f"/proc/{pid}/cmdline")
            status = _read(f"/proc/{pid}/status")
            if stat is None or cmdline is None or status is None:
                continue
            # Fields after the command name: [11] utime, [12] stime, [19] start time, [21] RSS pages.
            fields = stat.rsplit(")", 1)[1].split()
            group = groups[pid] = _classify(pid, self.own_pid, cmdline.replace("\0", " ").strip())
            if group == "driver_jvm" and groups.get(parent) == "driver_jvm":
                # The JVM forks to run commands such as chmod for Hadoop's local file system. Until
                # the child calls exec it is a copy that shares the JVM's pages, so it is skipped.
                continue
            usage[group] += int(fields[21]) * PAGE_SIZE
            anonymous[group] += _status_kib(status, "RssAnon") * 1024
            cpu[(pid, fields[19])] = (group, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
        with self._lock:
            self._cpu.update(cpu)
        usage["total"] = sum(usage.values())
        usage.update({f"{group}/anon": value for group, value in anonymous.items()})
        usage["total/anon"] = sum(anonymous.values())
        return usage

    def cpu_seconds(self) -> dict[tuple[int, str], tuple[str, float]]:
        """Return a copy of the CPU table after a fresh sample."""
        self._update(self.sample())
        with self._lock:
            return dict(self._cpu)

    @staticmethod
    def cpu_between(before: dict, after: dict) -> dict[str, float]:
        """Return the CPU seconds by group (and ``total``) spent between two CPU tables."""
        seconds = dict.fromkeys(ALL_GROUPS, 0.0)
        for key, (group, value) in after.items():
            seconds[group] += value - before.get(key, (group, 0.0))[1]
        seconds["total"] = sum(seconds.values())
        return seconds

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self._update(self.sample())

    def _update(self, usage: dict[str, int]) -> None:
        with self._lock:
            for group, value in usage.items():
                self._peaks[group] = max(self._peaks.get(group, 0), value)

    def begin(self) -> None:
        with self._lock:
            self._peaks = {}
        self._update(self.sample())

    def end(self) -> dict[str, int]:
        self._update(self.sample())
        with self._lock:
            return dict(self._peaks)

    def stop(self) -> None:
        self._halt.set()


def _status_kib(status: str, key: str) -> int:
    """Return the kB value of ``key`` in a /proc/<pid>/status text, or 0 when absent."""
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# --- run record ------------------------------------------------------------------------------

@dataclasses.dataclass
class RunRecord:
    """Everything one run measured; saved as JSON after every stage."""

    name: str
    command: str
    started: str
    machine: dict
    params: dict
    stages: list = dataclasses.field(default_factory=list)
    encode: dict = dataclasses.field(default_factory=dict)
    quality: dict = dataclasses.field(default_factory=dict)
    status: str = "running"
    finished: str | None = None
    load_average_start: list = dataclasses.field(default_factory=list)
    load_average_end: list = dataclasses.field(default_factory=list)

    def save(self, folder: pathlib.Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1), encoding="utf-8")


class StageTimer:
    """Time one stage, measure its CPU time and peak memory, and append it to the run record."""

    def __init__(self, record: RunRecord, sampler: ProcessSampler, records_folder: pathlib.Path) -> None:
        self.record = record
        self.sampler = sampler
        self.records_folder = records_folder
        self.current = "none"

    @contextlib.contextmanager
    def stage(self, name: str, rows: int | None = None):
        details: dict = {"rows": rows}
        self.current = name
        print(f"stage={name} status=started", flush=True)
        self.sampler.begin()
        cpu_before = self.sampler.cpu_seconds()
        started = time.perf_counter()
        yield details
        seconds = time.perf_counter() - started
        cpu = self.sampler.cpu_between(cpu_before, self.sampler.cpu_seconds())
        peaks = self.sampler.end()
        entry = {"stage": name, "seconds": seconds, "cpu_seconds": cpu, "load_average_1m": os.getloadavg()[0],
                 "memory": peaks, **details}
        self.record.stages.append(entry)
        self.record.save(self.records_folder)
        rate = f" rows_per_s={details['rows'] / seconds:,.0f}" if details.get("rows") else ""
        print(f"stage={name} status=finished seconds={seconds:.1f} cpu_seconds={cpu['total']:.1f}{rate} "
              f"driver_mib={_driver_bytes(peaks) / 2**20:,.0f} workers_mib={_worker_bytes(peaks) / 2**20:,.0f}",
              flush=True)


def _driver_bytes(peaks: dict) -> int:
    return sum(peaks.get(group, 0) for group in DRIVER_GROUPS)


def _worker_bytes(peaks: dict) -> int:
    return sum(peaks.get(group, 0) for group in WORKER_GROUPS)


# --- synthetic catalog -----------------------------------------------------------------------

def generate_catalog(args: argparse.Namespace, folder: pathlib.Path) -> dict[str, int]:
    """Write ``items/`` and ``interactions/`` Parquet chunks under ``folder`` and return the counts.

    items: item_id, embedding (list<float>, unit norm), popularity (int64, Zipf counts).
    interactions: user_id, item_id, position; each user is one co-occurrence pair of two
    items of the same mixture component, the first drawn in proportion to popularity.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(args.clusters, args.dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = np.arange(1, args.clusters + 1, dtype=np.float64) ** -args.cluster_exponent
    weights /= weights.sum()

    items_folder, pairs_folder = folder / "items", folder / "interactions"
    for path in (items_folder, pairs_folder):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)

    pair_count = 0
    for part, start in enumerate(range(0, args.items, args.chunk_rows)):
        count = min(args.chunk_rows, args.items - start)
        labels = rng.choice(args.clusters, size=count, p=weights)
        vectors = centers[labels] + rng.normal(scale=args.noise / np.sqrt(args.dim), size=(count, args.dim))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        popularity = rng.zipf(args.zipf, size=count).astype(np.int64)
        ids = np.char.add("item-", np.char.zfill(np.arange(start, start + count).astype(str), 10)).astype(object)

        offsets = pa.array(np.arange(0, (count + 1) * args.dim, args.dim, dtype=np.int32))
        embedding = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
        items = pa.table({"item_id": pa.array(ids, pa.string()), "embedding": embedding,
                          "popularity": pa.array(popularity)})
        pq.write_table(items, items_folder / f"part-{part:05d}.parquet")

        left, right = _draw_pairs(rng, labels, popularity, round(count * args.pairs_per_item))
        users = np.char.add(f"pair-{part:05d}-", np.arange(len(left)).astype(str)).astype(object)
        interactions = pa.table({
            "user_id": pa.array(np.repeat(users, 2), pa.string()),
            "item_id": pa.array(np.column_stack([ids[left], ids[right]]).reshape(-1), pa.string()),
            "position": pa.array(np.tile(np.array([0, 1], dtype=np.int64), len(left))),
        })
        pq.write_table(interactions, pairs_folder / f"part-{part:05d}.parquet")
        pair_count += len(left)
    return {"items": args.items, "pairs": pair_count}


def _draw_pairs(rng, labels: np.ndarray, popularity: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return row indices (left, right) of ``count`` pairs of distinct rows with equal labels.

    Left rows are drawn in proportion to popularity. Right rows are drawn uniformly among the
    other rows of the same label, and pairs whose label has a single row are dropped.
    """
    left = rng.choice(len(labels), size=count, p=popularity / popularity.sum())
    order = np.argsort(labels, kind="stable")
    unique, first, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    slot = np.searchsorted(unique, labels[left])
    # own[row]: the row's position inside its label's block of ``order``.
    own = np.empty(len(labels), dtype=np.int64)
    own[order] = np.arange(len(labels)) - np.repeat(first, sizes)
    keep = sizes[slot] > 1
    left, slot = left[keep], slot[keep]
    # Draw among the size - 1 other rows; an offset at or past the left row's own position skips it.
    offset = rng.integers(0, sizes[slot] - 1)
    offset = np.where(offset >= own[left], offset + 1, offset)
    right = order[first[slot] + offset]
    return left, right


# --- pipeline --------------------------------------------------------------------------------

def load_pipeline_config(args: argparse.Namespace, run_folder: pathlib.Path, catalog_folder: pathlib.Path):
    """Load ``--config`` with the ``--set`` overrides, then set the run's own folders and strategy."""
    import yaml

    from sid.config import load_config

    overrides = {"spark.delta_jars_dir": str(ROOT / ".delta-jars")}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"--set {item!r} must be written SECTION.KEY=VALUE, e.g. --set run.seed=7")
        overrides[key.strip()] = yaml.safe_load(value)
    overrides.update({
        "spark.warehouse_dir": str(run_folder / "warehouse"),
        "run.work_dir": str(run_folder / "work"),
        "resolve.strategy": args.strategy,
        "catalog.format": "parquet",
        "catalog.path": str(catalog_folder / "items"),
        "catalog.interactions_path": str(catalog_folder / "interactions"),
    })
    return load_config(args.config, overrides=overrides)


def _with_schema(frame, ddl: str):
    """Select the columns of Spark DDL ``ddl`` from ``frame``; columns it lacks become typed nulls."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    columns = []
    for field in T.StructType.fromDDL(ddl).fields:
        if field.name in frame.columns:
            columns.append(F.col(field.name))
        else:
            columns.append(F.lit(None).cast(field.dataType).alias(field.name))
    return frame.select(*columns)


def run_pipeline(spark, config, catalog_folder: pathlib.Path, timer: StageTimer, record: RunRecord):
    """Run the stages from the item_embeddings table to the corpus metrics; return the quantizer."""
    from pyspark.sql import functions as F

    from pipelines.assign import assign_codes
    from pipelines.ingest import priority_hash_column
    from pipelines.metrics import bucket_metrics, level_metrics, reconstruction_metrics, resolution_metrics
    from pipelines.resolve import resolve_sids
    from pipelines.sweep import train_candidates
    from pipelines.train import write_training_sample
    from sid import tables
    from sid.config import config_hash

    now = datetime.datetime.now(datetime.timezone.utc)
    version = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    names = {key: tables.qualified_name(config.tables, key) for key in ("item_embeddings", "codebooks", "item_sids")}
    tables.ensure_database(spark, config.tables)
    catalog = spark.read.parquet(str(catalog_folder / "items"))
    if config.run.partitions:
        catalog = catalog.repartition(config.run.partitions)

    with timer.stage("item_embeddings") as details:
        # The keys that ingest computes and build keeps cached: popularity and the priority hash.
        keys = catalog.select("item_id", "popularity",
                              priority_hash_column(config.run.seed).alias("priority_hash")).cache()
        keys.count()
        rows = (
            catalog.select("item_id", "embedding")
            .withColumn("model", F.lit(MODEL_NAME))
            .withColumn("embedding_version", F.lit(version))
            .withColumn("created_at", F.current_timestamp())
        )
        details["rows"] = tables.write_version(
            _with_schema(rows, tables.ITEM_EMBEDDINGS_SCHEMA), spark, names["item_embeddings"],
            schema=tables.ITEM_EMBEDDINGS_SCHEMA, key_column="embedding_version", key_value=version,
        )
        stored = (spark.table(names["item_embeddings"]).where(F.col("embedding_version") == version)
                  .select("item_id", "embedding"))
        embedded = stored.join(keys, "item_id")

    sample_folder = pathlib.Path(config.run.work_dir) / "train_sample"
    with timer.stage("train_sample") as details:
        details["rows"] = write_training_sample(stored, keys, config, sample_folder)

    with timer.stage("train", rows=record.stages[-1]["rows"]) as details:
        trained = train_candidates(embedded, sample_folder, config)
        _write_codebooks(spark, trained.codebooks, config, names["codebooks"], version, config_hash(config))
        details["fit_seconds"] = trained.stats.get("fit_seconds")

    with timer.stage("assign") as details:
        assigned = assign_codes(stored, trained.quantizer, top_k=config.quantize.top_k)
        assigned = assigned.join(keys, "item_id").persist()
        details["rows"] = assigned.count()

    with timer.stage("resolve") as details:
        resolved = resolve_sids(assigned, config.resolve, codebooks=trained.codebooks, seed=config.run.seed).persist()
        steps = resolution_metrics(resolved)
        details["rows"] = int(sum(value for key, value in steps.items() if key.startswith("step/")))
        details["moved"] = steps["moved"]

    with timer.stage("item_sids") as details:
        published = _item_sids_frame(assigned, resolved, config, version)
        details["rows"] = tables.write_version(
            _with_schema(published, tables.ITEM_SIDS_SCHEMA), spark, names["item_sids"],
            schema=tables.ITEM_SIDS_SCHEMA, key_column="codebook_version", key_value=version,
        )

    with timer.stage("corpus_metrics", rows=details["rows"]):
        sids = spark.table(names["item_sids"]).where(F.col("codebook_version") == version)
        metrics = {f"raw/{key}": value for key, value in bucket_metrics(assigned, "raw_codes").items()}
        metrics.update({f"final/{key}": value for key, value in bucket_metrics(sids, "codes").items()})
        metrics.update(level_metrics(assigned, "raw_codes", config.codebook_sizes()))
        metrics.update(reconstruction_metrics(assigned))
    record.quality = {key: float(value) for key, value in metrics.items()}

    resolved.unpersist()
    assigned.unpersist()
    keys.unpersist()
    return trained.quantizer


def _write_codebooks(spark, codebooks, config, table: str, version: str, hash_value: str) -> None:
    """Write the codebooks table rows of ``version``, as the build does."""
    from pyspark.sql import functions as F

    from sid import tables

    rows = [
        (version, level, code, [float(value) for value in centroid])
        for level, codebook in enumerate(codebooks)
        for code, centroid in enumerate(codebook)
    ]
    frame = (
        spark.createDataFrame(rows, "codebook_version STRING, level INT, code INT, centroid ARRAY<FLOAT>")
        .withColumn("method", F.lit(config.quantize.method))
        .withColumn("config_hash", F.lit(hash_value))
        .withColumn("created_at", F.current_timestamp())
    )
    tables.write_version(_with_schema(frame, tables.CODEBOOKS_SCHEMA), spark, table, schema=tables.CODEBOOKS_SCHEMA,
                         key_column="codebook_version", key_value=version)


def _item_sids_frame(assigned, resolved, config, version: str):
    """Return the item_sids rows of ``version``, with the same columns and SID strings as the build."""
    from pyspark.sql import functions as F

    sid_string = F.expr(
        f"array_join(transform(codes, (code, level) -> "
        f"concat('<', substr('{SID_LETTERS}', level + 1, 1), '_', cast(code AS STRING), '>')), '')"
    )
    return (
        resolved.join(assigned.select("item_id", "raw_codes", "popularity"), "item_id")
        .withColumn("codebook_version", F.lit(version))
        .withColumn("sid", sid_string)
        .withColumn("strategy", F.lit(config.resolve.strategy))
        .withColumnRenamed("step", "resolution_step")
        .withColumn("assigned_at", F.current_timestamp())
    )


# --- encoders against faiss ------------------------------------------------------------------

# The bare encoders and the matmul peak run on one thread: on a shared machine a multi-threaded
# OpenMP or BLAS call waits for its slowest thread, which would charge the load to faiss.
ENCODE_THREADS = 1


def peak_matmul_flops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Return the best float32 matmul rate of NumPy's BLAS on ``threads`` threads, in flop/s."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    left = rng.normal(size=(size, size)).astype(np.float32)
    right = rng.normal(size=(size, size)).astype(np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads):
        left @ right
        for _ in range(repeats):
            started = time.perf_counter()
            left @ right
            best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def compare_encoders(items_folder: pathlib.Path, quantizer, *, top_k: int, chunk_rows: int,
                     limit: int | None) -> dict:
    """Encode the catalog's vectors with ``quantizer.encode`` and with bare faiss on one thread.

    Bare faiss: one float32 ``IndexFlatL2`` per level, a top-``top_k`` search of the
    residual, then the residual minus the nearest codeword. Only the encode calls are
    timed (wall and process CPU time), not the Parquet reads. ``code_mismatches`` counts
    items whose faiss codes differ from the quantizer's float64 codes.
    """
    import faiss
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from threadpoolctl import threadpool_limits

    codebooks = [np.ascontiguousarray(codebook, dtype=np.float32) for codebook in quantizer.codebooks]
    indexes = []
    for codebook in codebooks:
        index = faiss.IndexFlatL2(codebook.shape[1])
        index.add(codebook)
        indexes.append(index)

    totals = {"vectors": 0, "code_mismatches": 0, "sid_seconds": 0.0, "sid_cpu_seconds": 0.0,
              "faiss_seconds": 0.0, "faiss_cpu_seconds": 0.0}
    faiss.omp_set_num_threads(ENCODE_THREADS)
    dataset = ds.dataset(str(items_folder), format="parquet")
    with threadpool_limits(limits=ENCODE_THREADS):
        for batch in dataset.to_batches(columns=["embedding"], batch_size=chunk_rows):
            if limit is not None and totals["vectors"] >= limit:
                break
            flat = pc.list_flatten(batch.column(0)).to_numpy(zero_copy_only=False)
            vectors = np.ascontiguousarray(flat.reshape(batch.num_rows, -1), dtype=np.float32)
            if limit is not None:
                vectors = vectors[: limit - totals["vectors"]]

            wall, cpu = time.perf_counter(), time.process_time()
            result = quantizer.encode(vectors, top_k=top_k)
            totals["sid_seconds"] += time.perf_counter() - wall
            totals["sid_cpu_seconds"] += time.process_time() - cpu

            wall, cpu = time.perf_counter(), time.process_time()
            residual = vectors.copy()
            codes = np.empty((len(vectors), len(codebooks)), dtype=np.int64)
            for level, (index, codebook) in enumerate(zip(indexes, codebooks)):
                _, nearest = index.search(residual, top_k)
                codes[:, level] = nearest[:, 0]
                residual -= codebook[nearest[:, 0]]
            totals["faiss_seconds"] += time.perf_counter() - wall
            totals["faiss_cpu_seconds"] += time.process_time() - cpu

            totals["code_mismatches"] += int((codes != result.codes).any(axis=1).sum())
            totals["vectors"] += len(vectors)

    dim = codebooks[0].shape[1]
    totals.update({
        "threads": ENCODE_THREADS,
        "top_k": top_k,
        "flops_per_vector": 2.0 * dim * sum(len(codebook) for codebook in codebooks),
        "peak_float32_flops": peak_matmul_flops(ENCODE_THREADS),
    })
    return totals


# --- results page ----------------------------------------------------------------------------

def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.0f}"


def _scale_label(items: int) -> str:
    if items % 1_000_000 == 0:
        return f"{items // 1_000_000}M"
    if items % 1_000 == 0:
        return f"{items // 1_000}k"
    return f"{items:,}"


def render_run(record: dict) -> list[str]:
    params, machine = record["params"], record["machine"]
    lines = [
        f"### {params['items']:,} items x {params['dim']} dims, `{params['strategy']}` resolve"
        f"{'' if record['status'] == 'finished' else ' (failed attempt)'}",
        "",
        f"- Date: {record['started']}; status: {record['status']}.",
        f"- Command: `{record['command']}`.",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']:.0f} GiB RAM, no GPU used; "
        f"Python {machine['python']}, Spark {machine['spark']}, faiss {machine['faiss']}, NumPy {machine['numpy']}.",
        *([f"- Code: commit `{machine['commit']}`."] if machine.get("commit") else []),
        f"- Load average (1, 5, 15 min): {_loads(record['load_average_start'])} at the start, "
        f"{_loads(record['load_average_end'])} at the end; other jobs shared the machine.",
        f"- Config: {params['config_summary']}; memory and CPU sampled every {params.get('sample_seconds', 0.5)} s.",
        "",
        "| stage | rows | seconds | CPU s | rows/s | load 1 min at end | driver RSS peak MiB (Python + JVM) "
        "| JVM anonymous peak MiB | worker RSS peak MiB (Spark Python + Ray) | tree RSS peak MiB "
        "| tree anonymous peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    total = cpu_total = 0.0
    for stage in record["stages"]:
        memory = stage["memory"]
        rows = stage.get("rows")
        cpu = stage["cpu_seconds"]["total"]
        rate = f"{rows / stage['seconds']:,.0f}" if rows else "-"
        total += stage["seconds"]
        cpu_total += cpu
        lines.append(
            f"| {stage['stage']} | {rows:,} | {stage['seconds']:.1f} | {cpu:.1f} | {rate} | "
            f"{stage['load_average_1m']:.1f} | "
            f"{_mib(_driver_bytes(memory))} ({_mib(memory.get('driver_python'))} + {_mib(memory.get('driver_jvm'))}) | "
            f"{_mib(memory.get('driver_jvm/anon'))} | "
            f"{_mib(_worker_bytes(memory))} ({_mib(memory.get('spark_python_workers'))} + "
            f"{_mib(memory.get('ray_workers'))}) | {_mib(memory.get('total'))} | {_mib(memory.get('total/anon'))} |"
        )
    lines.append(f"| all stages | | {total:.1f} | {cpu_total:.1f} | | | | | | | |")
    lines += _render_encode(record)
    quality = record.get("quality") or {}
    if quality:
        levels = sorted(key for key in quality if key.endswith("/utilization"))
        lines += ["", (
            f"Raw collision rate {quality['raw/collision_rate']:.4f}, final collision rate "
            f"{quality['final/collision_rate']:.4f}, utilization per level "
            f"{', '.join(f'{quality[key]:.3f}' for key in levels)}, relative reconstruction error "
            f"{quality['reconstruction_relative']:.4f}."
        )]
    return lines


def _loads(values: list) -> str:
    return ", ".join(f"{value:.1f}" for value in values) if values else "-"


def _render_encode(record: dict) -> list[str]:
    encode = record.get("encode") or {}
    if not encode:
        return []
    peak = encode["peak_float32_flops"]
    flops = encode["flops_per_vector"]
    faiss_rate = encode["vectors"] / encode["faiss_cpu_seconds"]
    rows = [
        (f"bare faiss `IndexFlatL2` per level, top-{encode['top_k']}, float32, 1 thread", encode["vectors"],
         encode["faiss_seconds"], encode["faiss_cpu_seconds"]),
        (f"`ResidualKMeans.encode`, top-{encode['top_k']}, float64, 1 thread", encode["vectors"],
         encode["sid_seconds"], encode["sid_cpu_seconds"]),
    ]
    assign = next((stage for stage in record["stages"] if stage["stage"] == "assign"), None)
    if assign:
        rows.append(("assign stage: Spark, Arrow transfer, output columns, join and persist included",
                     assign["rows"], assign["seconds"], assign["cpu_seconds"]["total"]))
    lines = [
        "",
        f"Encode throughput with the trained codebooks. The arithmetic limit is N x L x K x D x 2 = "
        f"{flops:,.0f} flop per item; the peak is NumPy's float32 2048 x 2048 matmul on one thread, "
        f"measured in this run: {peak / 1e9:,.1f} GFLOP/s. Ratios and shares use items per CPU second, "
        f"which the other jobs on the machine disturb less than wall time. {encode['code_mismatches']:,} of "
        f"{encode['vectors']:,} items get other codes from float32 faiss than from the float64 encoder.",
        "",
        "| encoder | items | seconds | items/s | CPU s | items per CPU s | ratio to bare faiss "
        "| share of float32 peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, count, seconds, cpu_seconds in rows:
        rate = count / cpu_seconds
        lines.append(f"| {label} | {count:,} | {seconds:.1f} | {count / seconds:,.0f} | {cpu_seconds:.1f} | "
                     f"{rate:,.0f} | {rate / faiss_rate:.3f} | {rate * flops / peak:.1%} |")
    return lines


def render_summary(records: list[dict]) -> list[str]:
    """Return a short summary of each largest finished run (one per dimension and strategy) and its slope."""
    finished = sorted((record for record in records if record["status"] == "finished"),
                      key=lambda record: record["params"]["items"])
    if not finished:
        return []
    max_items = finished[-1]["params"]["items"]
    lines = []
    for largest in (record for record in finished if record["params"]["items"] == max_items):
        smaller = [record for record in finished if record["params"]["items"] < max_items
                   and record["params"]["dim"] == largest["params"]["dim"]
                   and record["params"]["strategy"] == largest["params"]["strategy"]]
        lines += ["", _summary_line(largest, smaller[-1] if smaller else None)]
    return lines


def _summary_line(largest: dict, previous_record: dict | None) -> str:
    """Return the summary sentences of run ``largest``, with ratios to ``previous_record`` when given."""
    stages = {stage["stage"]: stage for stage in largest["stages"]}
    wall = sum(stages[name]["seconds"] for name in PIPELINE_STAGES if name in stages)
    cpu = sum(stages[name]["cpu_seconds"]["total"] for name in PIPELINE_STAGES if name in stages)
    peak = max(stage["memory"].get("total", 0) for stage in largest["stages"])
    driver_python = max(stage["memory"].get("driver_python", 0) for stage in largest["stages"])
    params = largest["params"]
    line = (
        f"Summary, {params['items']:,} items x {params['dim']} dims (`{params['strategy']}`): "
        f"the pipeline stages took {wall:,.0f} s wall and {cpu:,.0f} CPU s. The process tree peaked at "
        f"{_mib(peak)} MiB RSS, and the driver's Python process at {_mib(driver_python)} MiB."
    )
    if previous_record is not None:
        previous = {stage["stage"]: stage for stage in previous_record["stages"]}
        previous_wall = sum(previous[name]["seconds"] for name in PIPELINE_STAGES if name in previous)
        previous_cpu = sum(previous[name]["cpu_seconds"]["total"] for name in PIPELINE_STAGES if name in previous)
        line += (
            f" Against {previous_record['params']['items']:,} items "
            f"({params['items'] / previous_record['params']['items']:.0f}x the items), the pipeline stages took "
            f"{wall / previous_wall:.2f}x the wall time and {cpu / previous_cpu:.2f}x the CPU time."
        )

    encode = largest.get("encode")
    if encode:
        faiss_rate = encode["vectors"] / encode["faiss_cpu_seconds"]
        sid_rate = encode["vectors"] / encode["sid_cpu_seconds"]
        assign_rate = stages["assign"]["rows"] / stages["assign"]["cpu_seconds"]["total"]
        line += (
            f" Per CPU second, `ResidualKMeans.encode` reached {sid_rate / faiss_rate:.2f} of bare faiss's encode "
            f"throughput on the same vectors and codebooks, and the whole assign stage {assign_rate / faiss_rate:.2f}."
        )
    return line


def render_slopes(records: list[dict]) -> list[str]:
    """Return one table per (dim, strategy) with the stage times of every finished run and their ratios."""
    lines: list[str] = []
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["status"] == "finished":
            groups.setdefault((record["params"]["dim"], record["params"]["strategy"]), []).append(record)
    for (dim, strategy), runs in sorted(groups.items()):
        runs.sort(key=lambda run: run["params"]["items"])
        if len(runs) < 2:
            continue
        labels = [_scale_label(run["params"]["items"]) for run in runs]
        steps = [(i, f"{labels[i + 1]} / {labels[i]}") for i in range(len(runs) - 1)]
        wall = [{stage["stage"]: stage["seconds"] for stage in run["stages"]} for run in runs]
        cpu = [{stage["stage"]: stage["cpu_seconds"]["total"] for stage in run["stages"]} for run in runs]
        for table in (wall, cpu):
            for times in table:
                times["pipeline stages"] = sum(times.get(stage, 0.0) for stage in PIPELINE_STAGES)
                times["all stages"] = sum(value for key, value in times.items() if key != "pipeline stages")
        header = (["stage"] + [f"{label} s" for label in labels] + [f"{label} CPU s" for label in labels]
                  + [f"wall {step}" for _, step in steps] + [f"CPU {step}" for _, step in steps])
        lines += [
            "",
            f"### Scaling, {dim} dims, `{strategy}` resolve",
            "",
            "Ratios of stage times between consecutive runs; a stage that grows linearly with the "
            "catalog shows the ratio of the item counts. `train` fits a sample of at most "
            "`quantize.train_sample_size` items, so it should not grow with the catalog. Pipeline stages are "
            "`item_embeddings` to `corpus_metrics`, without generating the catalog and starting the sessions. "
            "A ratio below the item ratio means that fixed costs, such as Spark job planning, Delta commits "
            "and the Ray actor's start, still weigh at the smaller size.",
            "",
            "| " + " | ".join(header) + " |",
            "| --- |" + " ---: |" * (len(header) - 1),
        ]
        for stage in [stage["stage"] for stage in runs[-1]["stages"]] + ["pipeline stages", "all stages"]:
            cells = [_seconds(times.get(stage)) for times in wall + cpu]
            for table in (wall, cpu):
                cells += [_ratio(table[i].get(stage), table[i + 1].get(stage)) for i, _ in steps]
            lines.append("| " + " | ".join([stage] + cells) + " |")
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(small: float | None, big: float | None) -> str:
    return f"{big / small:.2f}" if small and big else "-"


def render_section(records_folder: pathlib.Path) -> list[str]:
    records = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(records_folder.glob("*.json"))]
    # The default strategy first, then each series by size and start time.
    records.sort(key=lambda record: (record["params"]["dim"], record["params"]["strategy"] != "suffix",
                                     record["params"]["strategy"], record["params"]["items"], record["started"]))
    lines = [
        SECTION_START,
        "## Scale: embeddings to published SIDs (`benchmarks/scale.py`)",
        "",
        "Synthetic catalogs (unit-norm Gaussian-mixture embeddings, Zipf popularity, co-occurrence pairs) "
        "run through the project's stage functions, chained as `pipelines/build.py` chains them, in one "
        "Spark local-mode session with a local Ray. How to read the tables:",
        "",
        "- Stages: `item_embeddings` reads the catalog Parquet, caches the item keys (popularity, priority "
        "hash) and writes the Delta table. `train` includes the codebooks table. `assign` and `resolve` end "
        "when their frames are persisted and counted. `corpus_metrics` computes the bucket metrics of the raw "
        "codes (assigned frame) and of the final codes (`item_sids` table), the level metrics and the "
        "reconstruction error.",
        "- CPU s is the user and system time of the whole process tree (driver, JVM, Spark and Ray "
        "workers) during the stage. Other jobs shared the machine, so CPU s is steadier than wall time.",
        "- Peak memory is the largest sum of resident set sizes (RSS) of a process group, sampled from "
        "/proc. Forked Spark Python workers share pages, and each worker counts them again. The anonymous "
        "part (RssAnon) leaves out file pages, which the kernel can drop under memory pressure.",
        "- Each run is stored as JSON under `<work-dir>/records` (default /tmp/scale/records), and "
        "`python benchmarks/scale.py --render-only` rewrites this section from those records. A failed "
        "attempt keeps the config it ran with, which may differ from today's `conf/local.yaml`.",
    ]
    lines += render_summary(records)
    for record in records:
        lines += [""] + render_run(record)
    lines += render_slopes(records)
    lines.append(SECTION_END)
    return lines


# --- main ------------------------------------------------------------------------------------

def machine_description() -> dict:
    import faiss
    import pyspark

    cpu = next((line.split(":", 1)[1].strip() for line in (_read("/proc/cpuinfo") or "").splitlines()
                if line.startswith("model name")), platform.machine())
    memory_kib = next((int(line.split()[1]) for line in (_read("/proc/meminfo") or "").splitlines()
                       if line.startswith("MemTotal:")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_kib / 2**20,
            "python": platform.python_version(), "spark": pyspark.__version__, "faiss": faiss.__version__,
            "numpy": np.__version__, "commit": code_commit()}


def code_commit() -> str | None:
    """Return the short commit hash of the checkout, with "+changes" when files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+changes" if changed else commit


def config_summary(config) -> str:
    spark = config.spark
    extra = ", ".join(f"{key}={value}" for key, value in sorted(spark.extra_conf.items()))
    return (f"Spark {spark.master}, driver memory {spark.driver_memory}, {spark.shuffle_partitions} shuffle "
            f"partitions{', ' + extra if extra else ''}; {config.quantize.method} "
            f"{'x'.join(str(size) for size in config.codebook_sizes())}, training sample at most "
            f"{config.quantize.train_sample_size:,} items, trainer actor {config.quantize.num_cpus} CPUs, "
            f"top-{config.quantize.top_k} candidates")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    import signal

    args = parse_args(argv)
    work = pathlib.Path(args.work_dir).resolve()
    records_folder = work / "records"
    if args.render_only:
        lines = render_section(records_folder)
        print("\n".join(lines))
        if not args.no_results:
            write_section(lines, start=SECTION_START, end=SECTION_END)
        return 0
    if args.items < 1000 or args.chunk_rows < 1 or args.clusters < 1 or args.zipf <= 1 or args.pairs_per_item < 0:
        raise SystemExit("--items must be >= 1000, --chunk-rows and --clusters >= 1, --zipf > 1, "
                         "--pairs-per-item >= 0")

    from pipelines.session import build_spark, init_ray

    name = f"scale-{args.items}-d{args.dim}-{args.strategy}"
    run_folder = work / name
    catalog_folder = run_folder / "catalog"
    shutil.rmtree(run_folder, ignore_errors=True)
    config = load_pipeline_config(args, run_folder, catalog_folder)
    record = RunRecord(
        name=name,
        command=" ".join(["python benchmarks/scale.py"] + [shlex.quote(arg) for arg in argv]),
        started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_description(),
        params={"items": args.items, "dim": args.dim, "strategy": args.strategy, "clusters": args.clusters,
                "cluster_exponent": args.cluster_exponent, "noise": args.noise, "zipf": args.zipf,
                "pairs_per_item": args.pairs_per_item, "chunk_rows": args.chunk_rows,
                "sample_seconds": args.sample_seconds,
                "config": args.config, "overrides": args.set, "config_summary": config_summary(config)},
        load_average_start=list(os.getloadavg()),
    )
    record.save(records_folder)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    sampler = ProcessSampler(args.sample_seconds)
    sampler.start()
    timer = StageTimer(record, sampler, records_folder)

    spark = None
    try:
        with timer.stage("generate", rows=args.items) as details:
            details["pairs"] = generate_catalog(args, catalog_folder)["pairs"]
        with timer.stage("session_start", rows=0):
            # Ray first: starting it after the Spark JVM resets py4j's idle connections.
            init_ray(config.ray)
            spark = build_spark(config.spark)
        quantizer = run_pipeline(spark, config, catalog_folder, timer, record)
    except BaseException as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        record.status = f"failed in stage {timer.current}: {type(error).__name__}: {message}"[:300]
        record.load_average_end = list(os.getloadavg())
        record.save(records_folder)
        raise
    finally:
        _stop_sessions(spark)

    print("stage=encode_comparison status=started", flush=True)
    record.encode = compare_encoders(catalog_folder / "items", quantizer, top_k=config.quantize.top_k,
                                     chunk_rows=args.chunk_rows, limit=args.compare_items)
    record.status = "finished"
    record.finished = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    record.load_average_end = list(os.getloadavg())
    record.save(records_folder)
    sampler.stop()

    lines = render_section(records_folder)
    print("\n".join(render_run(dataclasses.asdict(record))))
    if not args.no_results:
        write_section(lines, start=SECTION_START, end=SECTION_END)
    if not args.keep_data:
        shutil.rmtree(run_folder, ignore_errors=True)
    return 0


def _stop_sessions(spark) -> None:
    import ray

    if spark is not None:
        spark.stop()
    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
