"""Resolve the Beauty SIDs with every strategy on one trained codebook and compare them.

Runbook (repository root, after ``bash scripts/install.sh`` and one finished Beauty build,
so that ``<warehouse>/sid.db/item_embeddings`` exists):

    .venv/bin/python benchmarks/resolve_beauty.py --warehouse warehouse
    .venv/bin/python benchmarks/resolve_beauty.py --warehouse /tmp/wh --strategies suffix,ecm --no-results

The script reads the latest ``embedding_version`` of the build's item embeddings from Delta
by path and ingests the catalog again for popularity and priority_hash. It trains the
quantizer of ``--config`` once (residual k-means with ``conf/beauty.yaml``) with the build's
own train and assign functions. Then ``pipelines.resolve.resolve_sids`` runs once per
strategy on the same assigned codes. The script's Spark session uses a scratch warehouse
under ``--work-dir``, so the build's Derby metastore stays free. It prints one table and
rewrites its own section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import write_section  # noqa: E402

SECTION_START = "<!-- resolve_beauty:start -->"
SECTION_END = "<!-- resolve_beauty:end -->"
STRATEGIES = "suffix,forge_knn,forge_random,ecm,rrs"
# Folders this script creates under --work-dir and removes at the start of a run.
SCRATCH_FOLDERS = ("warehouse", "work", "train_sample")
# Columns of the step counts, in the order of the fallback chain.
STEP_COLUMNS = ("keep", "reassign", "widen", "move_parent", "append", "pending")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "conf" / "beauty.yaml"),
                        help="build config that sets the catalog, quantizer and seed (default conf/beauty.yaml)")
    parser.add_argument("--warehouse", default=str(ROOT / "warehouse"),
                        help="warehouse folder of a finished build, containing sid.db/item_embeddings")
    parser.add_argument("--strategies", default=STRATEGIES, help=f"comma-separated strategies (default {STRATEGIES})")
    parser.add_argument("--capacity", type=int, default=1,
                        help="items per SID for forge_knn and forge_random (default 1)")
    parser.add_argument("--work-dir", default=str(ROOT / "benchmarks" / "out" / "resolve_beauty"),
                        help="scratch folder for the Spark warehouse and training sample, replaced on each run")
    parser.add_argument("--no-results", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def read_embeddings(spark, warehouse: pathlib.Path):
    """Return (item_id, embedding) of the latest embedding_version and that version."""
    from pyspark.sql import functions as F

    path = warehouse / "sid.db" / "item_embeddings"
    if not path.is_dir():
        raise SystemExit(f"no item_embeddings table at {path}; run a Beauty build with this --warehouse first")
    table = spark.read.format("delta").load(str(path))
    version = table.agg(F.max("embedding_version")).collect()[0][0]
    return table.where(F.col("embedding_version") == version).select("item_id", "embedding"), version


def run_strategy(assigned, config, strategy: str, capacity: int, codebooks) -> dict:
    """Resolve ``assigned`` with one strategy; return its timing, collisions and resolution metrics."""
    from pyspark.sql import functions as F

    from pipelines.metrics import resolution_metrics
    from pipelines.resolve import resolve_sids

    resolve = dataclasses.replace(config.resolve, strategy=strategy, capacity=capacity)
    started = time.perf_counter()
    resolved = resolve_sids(assigned, resolve, codebooks=codebooks, seed=config.run.seed).persist()
    items = resolved.count()
    seconds = time.perf_counter() - started

    distinct = resolved.agg(F.countDistinct("codes")).collect()[0][0]
    metrics = resolution_metrics(resolved)
    resolved.unpersist()
    row = {"strategy": strategy, "seconds": seconds, "items": items, "final_collisions": items - distinct, **metrics}
    print(f"strategy={strategy} seconds={seconds:.1f} items={items} final_collisions={items - distinct} "
          f"moved={metrics['moved']:.0f} mean_levels_changed={metrics['mean_levels_changed']:.3f} "
          f"mean_distance_increase={metrics['mean_distance_increase']:.5f} "
          + " ".join(f"{key}={value:.0f}" for key, value in sorted(metrics.items()) if key.startswith("step/")),
          flush=True)
    return row


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    work_dir = pathlib.Path(args.work_dir).resolve()
    for scratch in SCRATCH_FOLDERS:
        shutil.rmtree(work_dir / scratch, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)

    from pyspark.sql import functions as F

    from pipelines.assign import assign_codes
    from pipelines.ingest import ingest_catalog
    from pipelines.session import build_spark, init_ray
    from pipelines.train import train_quantizer, write_training_sample
    from sid.config import load_config

    config = load_config(args.config, overrides={
        "spark.warehouse_dir": str(work_dir / "warehouse"),
        "spark.delta_jars_dir": str(ROOT / ".delta-jars"),
        "run.work_dir": str(work_dir / "work"),
    })
    # Ray first: starting it after the Spark JVM resets py4j's idle connections.
    init_ray(config.ray)
    spark = build_spark(config.spark)

    items = ingest_catalog(spark, config).items.select("item_id", "popularity", "priority_hash")
    embeddings, embedding_version = read_embeddings(spark, pathlib.Path(args.warehouse).resolve())
    embedded = embeddings.join(items, "item_id").persist()
    item_count = embedded.count()
    print(f"embedding_version={embedding_version} items={item_count}", flush=True)

    started = time.perf_counter()
    sample_size = write_training_sample(embedded, embedded, config, work_dir / "train_sample")
    trained = train_quantizer(work_dir / "train_sample", config)
    train_seconds = time.perf_counter() - started
    print(f"train method={config.quantize.method} sample={sample_size} seconds={train_seconds:.1f}", flush=True)

    assigned = assign_codes(embedded, trained.quantizer, top_k=config.quantize.top_k)
    assigned = assigned.join(embedded.select("item_id", "popularity", "priority_hash"), "item_id").persist()
    assigned.count()
    sizes = assigned.groupBy("raw_codes").count()
    raw_colliding = sizes.where("count > 1").agg(F.sum("count")).collect()[0][0] or 0
    raw_error = assigned.agg(F.mean("quantization_error")).collect()[0][0]
    print(f"raw colliding items={raw_colliding} rate={raw_colliding / item_count:.4f} "
          f"mean_quantization_error={raw_error:.5f}", flush=True)

    rows = []
    for strategy in [name.strip() for name in args.strategies.split(",") if name.strip()]:
        rows.append(run_strategy(assigned, config, strategy, args.capacity, trained.codebooks))

    lines = results_lines(args, config, embedding_version, item_count, raw_colliding, raw_error, train_seconds, rows)
    print("\n".join(lines))
    if not args.no_results:
        write_section(lines, start=SECTION_START, end=SECTION_END)
    spark.stop()

    import ray

    ray.shutdown()
    return 0


def results_lines(args, config, embedding_version: str, items: int, raw_colliding: int, raw_error: float,
                  train_seconds: float, rows: list[dict]) -> list[str]:
    """Return the RESULTS.md section: how it was run, then one table row per strategy."""
    today = datetime.date.today().isoformat()
    command = "python benchmarks/resolve_beauty.py " + " ".join(sys.argv[1:])
    sizes = " x ".join(str(size) for size in config.codebook_sizes())
    lines = [
        SECTION_START,
        "## Conflict resolution on Beauty (`benchmarks/resolve_beauty.py`)",
        "",
        f"{today}; {platform.machine()}, {os.cpu_count()} cores, Spark {config.spark.master}; "
        f"command: `{command.strip()}`.",
        f"{items:,} Beauty items (embedding_version {embedding_version}), {config.quantize.method} with "
        f"{sizes} codes trained once ({train_seconds:.0f} s), seed {config.run.seed}. "
        f"Raw SIDs: {raw_colliding:,} items ({raw_colliding / items:.2%}) share their SID with another item. "
        f"forge_knn and forge_random run with capacity {args.capacity}.",
        "",
        "Moved items are those whose final SID differs from their raw SID. Levels changed and "
        "distance increase are means over moved items; the distance increase is "
        "||x - recon(final)||^2 - ||x - recon(raw)||^2 in the embedding space. For scale, the mean "
        f"||x - recon(raw)||^2 over all items is {raw_error:.5f}. The step columns count "
        "items by how they got their final SID (keep the raw SID, reassign by the strategy's "
        "search, then the fallbacks widen, move_parent and append). `suffix` appends its extra code "
        "to every SID, so all its items count as append. Seconds cover the resolve stage "
        "alone, on cached assigned codes.",
        "",
        "| strategy | final collisions | items moved | mean levels changed | mean distance increase | "
        + " | ".join(STEP_COLUMNS) + " | seconds |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STEP_COLUMNS) + " | ---: |",
    ]
    for row in rows:
        steps = " | ".join(f"{row.get(f'step/{step}', 0.0):,.0f}" for step in STEP_COLUMNS)
        lines.append(
            f"| {row['strategy']} | {row['final_collisions']} | {row['moved']:,.0f} | "
            f"{row['mean_levels_changed']:.3f} | {row['mean_distance_increase']:.5f} | {steps} | {row['seconds']:.1f} |"
        )
    lines.append(SECTION_END)
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
