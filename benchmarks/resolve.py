"""Benchmark the resolve stage: items per minute for each strategy against FORGE's SQL.

Runbook (from the repository root, after ``bash scripts/install.sh``):

    .venv/bin/python benchmarks/resolve.py                       # 1M items, all strategies
    .venv/bin/python benchmarks/resolve.py --items 100000 --strategies suffix,ecm

A synthetic catalog of latent vectors (clustered, so code usage is skewed and about 10 % of
items share a raw SID) is encoded with random residual codebooks; the resulting raw codes
and top-k candidates are what the assign stage would hand to the resolve stage. Each
strategy runs the real Spark stage (``pipelines.resolve.resolve_sids``) in one local[2]
session. The peer baseline is FORGE's iterative re-assignment of the last level
(FORGE, arXiv 2509.20904, SID_generation/ID_collision.sql in its code) rewritten as Spark
DataFrame joins and windows, run in the same session. The script prints one line per run
and rewrites its own section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import write_section  # noqa: E402
from pipelines.resolve import resolve_sids  # noqa: E402
from pipelines.session import build_spark  # noqa: E402
from sid.codes import priority_hash  # noqa: E402
from sid.config import ResolveConfig, SparkConfig  # noqa: E402
from sid.quantize import ResidualKMeans, encode_residual  # noqa: E402

SECTION_START = "<!-- resolve:start -->"
SECTION_END = "<!-- resolve:end -->"
# Rows generated and encoded per chunk; bounds the driver's memory while writing Parquet.
CHUNK = 100_000
TOP_K = 10
# Latents that fit the codebooks; more only slows generation.
TRAIN_SAMPLE = 200_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="synthetic items (default 1,000,000)")
    parser.add_argument("--codebook-size", type=int, default=256, help="codes per level (default 256)")
    parser.add_argument("--levels", type=int, default=3, help="levels (default 3)")
    parser.add_argument("--dim", type=int, default=32, help="latent dimension (default 32)")
    parser.add_argument("--clusters", type=int, default=2000,
                        help="mixture components of the latents; fewer gives more collisions (default 2000)")
    parser.add_argument("--noise", type=float, default=0.05,
                        help="spread of items around their mixture component; smaller gives more collisions")
    parser.add_argument("--strategies", default="suffix,forge_knn,forge_random,ecm,rrs",
                        help="comma-separated resolve strategies (default: all)")
    parser.add_argument("--work-dir", default=str(ROOT / "benchmarks" / "out"), help="scratch folder")
    parser.add_argument("--no-results", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def make_catalog(args: argparse.Namespace, folder: pathlib.Path) -> list[np.ndarray]:
    """Write the synthetic assigned items as Parquet; return the codebooks."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=1.0, size=(args.clusters, args.dim)).astype(np.float32)
    weights = rng.zipf(1.3, size=args.clusters).astype(np.float64)
    weights /= weights.sum()

    def draw(count: int) -> np.ndarray:
        labels = rng.choice(args.clusters, size=count, p=weights)
        return centers[labels] + rng.normal(scale=args.noise, size=(count, args.dim)).astype(np.float32)

    # Codebooks trained on a sample, as the train stage would, so code usage is realistic.
    sample = draw(min(args.items, TRAIN_SAMPLE))
    quantizer = ResidualKMeans(codebook_sizes=[args.codebook_size] * args.levels, kmeans_iterations=10, seed=0)
    codebooks = quantizer.fit(sample).codebooks

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, args.items, CHUNK):
        count = min(CHUNK, args.items - start)
        latents = draw(count)
        encoded = encode_residual(latents, codebooks, top_k=TOP_K)
        ids = [f"item-{index:09d}" for index in range(start, start + count)]
        table = pa.table({
            "item_id": ids,
            "raw_codes": pa.array(encoded.codes.astype(np.int32).tolist(), type=pa.list_(pa.int32())),
            "popularity": rng.zipf(2.0, size=count).astype(np.int64),
            "priority_hash": [priority_hash(item, 0) for item in ids],
            "candidate_codes": pa.array(encoded.candidate_codes.astype(np.int32).tolist(),
                                        type=pa.list_(pa.list_(pa.int32()))),
            "candidate_distances": pa.array(encoded.candidate_distances.tolist(),
                                            type=pa.list_(pa.list_(pa.float32()))),
            "latent": pa.array(latents.tolist(), type=pa.list_(pa.float32())),
        })
        pq.write_table(table, folder / f"part-{start // CHUNK:05d}.parquet")
    return codebooks


def forge_sql_baseline(frame, *, capacity: int, codebook_size: int, levels: int):
    """Run FORGE's iterative last-level re-assignment as Spark joins; return (frame, rounds).

    Each round: candidate rows of unplaced items whose target SID has room; every target
    takes its proposals by candidate rank (then priority) up to its free room; every item
    keeps its best winning rank. It stops when a round places nobody.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # Integer mixed-radix SID keys, as FORGE's delimiter problem recommends.
    key = F.lit(0).cast("long")
    for level in range(levels):
        key = key * F.lit(codebook_size) + F.col("raw_codes")[level].cast("long")
    base = frame.select("item_id", "raw_codes", "popularity", "priority_hash", "candidate_codes").withColumn("sid_key", key)

    slot = F.row_number().over(Window.partitionBy("sid_key").orderBy(F.col("popularity").desc(), "priority_hash"))
    ranked = base.withColumn("slot", slot).localCheckpoint()
    placed = ranked.where(F.col("slot") <= capacity).select("item_id", F.col("sid_key").alias("final_key"))
    overflow = ranked.where(F.col("slot") > capacity)

    # One candidate row per overflow item and alternative rank p = 1..k-1 of the last level.
    prefix_key = F.col("sid_key") - F.col("raw_codes")[levels - 1].cast("long")
    candidates = overflow.select(
        "item_id", "popularity", "priority_hash", prefix_key.alias("prefix_key"),
        F.posexplode(F.slice(F.col("candidate_codes")[levels - 1], 2, 1_000)).alias("p", "alt"),
    ).select("item_id", "popularity", "priority_hash", (F.col("p") + 1).alias("p"),
             (F.col("prefix_key") + F.col("alt").cast("long")).alias("target")).localCheckpoint()

    occupancy = placed.groupBy(F.col("final_key").alias("target")).agg(F.count(F.lit(1)).alias("used")).localCheckpoint()
    rounds = 0
    while True:
        rounds += 1
        open_rows = (
            candidates.join(placed.select("item_id"), "item_id", "left_anti")
            .join(occupancy, "target", "left").fillna(0, ["used"])
            .where(F.col("used") < capacity)
        )
        by_target = Window.partitionBy("target").orderBy("p", F.col("popularity").desc(), "priority_hash")
        by_item = Window.partitionBy("item_id").orderBy("p")
        winners = (
            open_rows.withColumn("rank", F.row_number().over(by_target))
            .where(F.col("rank") <= F.lit(capacity) - F.col("used"))
            .withColumn("best", F.row_number().over(by_item))
            .where(F.col("best") == 1)
            # An item may win two targets; the second target keeps its room for later rounds.
            .select("item_id", F.col("target").alias("final_key"))
            .localCheckpoint()
        )
        won = winners.count()
        if won == 0:
            break
        placed = placed.unionByName(winners).localCheckpoint()
        occupancy = placed.groupBy(F.col("final_key").alias("target")).agg(F.count(F.lit(1)).alias("used")).localCheckpoint()
    return placed, rounds


def time_run(label: str, action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s", flush=True)
    return seconds, result


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from pyspark.sql import functions as F

    folder = pathlib.Path(args.work_dir) / f"resolve_{args.items}"
    load_at_start = os.getloadavg()[0]
    seconds, codebooks = time_run(f"generate items={args.items}", lambda: make_catalog(args, folder))

    spark = build_spark(SparkConfig(
        master="local[2]", warehouse_dir=str(pathlib.Path(args.work_dir) / "warehouse"),
        driver_memory="6g", shuffle_partitions=8, delta_jars_dir=str(ROOT / ".delta-jars"),
    ))
    frame = spark.read.parquet(str(folder)).cache()
    items = frame.count()
    sizes = frame.groupBy("raw_codes").count()
    colliding = sizes.where("count > 1").agg(F.sum("count")).collect()[0][0] or 0
    raw_rate = colliding / items
    print(f"items={items} raw_collision_rate={raw_rate:.4f}", flush=True)

    rows = []
    for strategy in [name.strip() for name in args.strategies.split(",") if name.strip()]:
        config = ResolveConfig(strategy=strategy)
        resolved_holder = {}

        def run_strategy():
            resolved = resolve_sids(frame, config, codebooks=codebooks, seed=0)
            resolved_holder["frame"] = resolved
            resolved.write.format("noop").mode("overwrite").save()

        seconds, _ = time_run(f"strategy={strategy}", run_strategy)
        check = resolved_holder["frame"].agg(
            F.count(F.lit(1)).alias("n"), F.countDistinct("codes").alias("distinct"),
            F.sum(F.col("moved").cast("int")).alias("moved"),
        ).collect()[0]
        rows.append((strategy, seconds, check["n"], check["n"] - check["distinct"], check["moved"]))

    seconds_sql, (placed, rounds) = time_run(
        "forge_sql_baseline", lambda: _run_baseline(frame, args)
    )
    baseline_unplaced = items - placed.count()
    print(f"forge_sql_baseline rounds={rounds} unplaced={baseline_unplaced}", flush=True)

    loads = (load_at_start, os.getloadavg()[0])
    lines = _results_table(args, items, raw_rate, rows, seconds_sql, rounds, baseline_unplaced, loads)
    print("\n".join(lines))
    if not args.no_results:
        write_section(lines, start=SECTION_START, end=SECTION_END)
    spark.stop()
    return 0


def _run_baseline(frame, args):
    placed, rounds = forge_sql_baseline(frame, capacity=1, codebook_size=args.codebook_size, levels=args.levels)
    placed.write.format("noop").mode("overwrite").save()
    return placed, rounds


def _results_table(args, items, raw_rate, rows, seconds_sql, rounds, baseline_unplaced, loads) -> list[str]:
    today = datetime.date.today().isoformat()
    command = "python benchmarks/resolve.py " + " ".join(sys.argv[1:])
    lines = [
        SECTION_START,
        "## Conflict resolution (`benchmarks/resolve.py`)",
        "",
        f"{today}; {platform.machine()}, {os.cpu_count()} cores, Spark local[2]; command: `{command.strip()}`.",
        f"{items:,} synthetic items, {args.levels} levels x {args.codebook_size} codes, latent dim {args.dim}, "
        f"raw collision rate {raw_rate:.4f}. Time covers the resolve stage only (input cached).",
        f"1-minute load average {loads[0]:.1f} at the start and {loads[1]:.1f} at the end. A load above "
        f"{os.cpu_count()} means that other processes shared the cores, so the times are upper bounds.",
        "",
        "| strategy | seconds | items per minute | final collisions | items moved | time / FORGE SQL |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for strategy, seconds, count, collisions, moved in rows:
        lines.append(
            f"| {strategy} | {seconds:.1f} | {count / seconds * 60:,.0f} | {collisions} | {moved} | "
            f"{seconds / seconds_sql:.2f} |"
        )
    lines.append(
        f"| FORGE SQL baseline (capacity 1, last level only, {rounds} rounds) | {seconds_sql:.1f} | "
        f"{items / seconds_sql * 60:,.0f} | {baseline_unplaced} unplaced | - | 1.00 |"
    )
    lines.append(SECTION_END)
    return lines




if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
