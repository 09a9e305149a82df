"""Benchmark the embed stage: text encoding speed against batch size, and the collaborative step.

Runbook (from the repository root, after ``bash scripts/install.sh``):

    .venv/bin/python benchmarks/embed.py                          # Beauty, both parts
    .venv/bin/python benchmarks/embed.py --items 1000 --batch-sizes 16,64 --no-results

Part 1 encodes the text of the first ``--items`` Beauty items with all-MiniLM-L6-v2 on
``--threads`` torch threads, once per batch size, after one warm-up pass. Part 2 runs the
collaborative step on all Beauty interactions in one local[2] Spark session: user sequences,
co-occurrence counts and the seeded SVD (in this process, not in a Ray task), then MLlib
Word2Vec. It also fits MLlib Word2Vec directly on 1 and 4 input partitions, without the
single-partition ordering of ``pipelines.collaborative``, and reports the largest vector
difference. The script prints one line per measurement and rewrites its own section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import write_section  # noqa: E402
from sid.catalog import parse_category_list  # noqa: E402
from sid.embed.text import render_item_text  # noqa: E402

SECTION_START = "<!-- embed:start -->"
SECTION_END = "<!-- embed:end -->"
BEAUTY = (ROOT / ".." / "shared" / "data" / "amazon-beauty-2014").resolve()
TEMPLATE = ["{title}", "Brand: {brand}", "Categories: {categories}"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default=str(BEAUTY), help="Beauty folder in RecBole layout")
    parser.add_argument("--items", type=int, default=2000, help="items encoded per batch size (default 2000)")
    parser.add_argument("--batch-sizes", default="8,16,32,64,128,256", help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--dim", type=int, default=64, help="collaborative vector size (default 64)")
    parser.add_argument("--no-results", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def read_texts(folder: pathlib.Path, limit: int) -> list[str]:
    texts = []
    with (folder / "Amazon_Beauty.item").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            record = {"title": row["title:token"], "brand": row["brand:token"],
                      "categories": parse_category_list(row["categories:token_seq"])}
            texts.append(render_item_text(record, TEMPLATE))
            if len(texts) == limit:
                break
    return texts


def benchmark_text(args: argparse.Namespace) -> list[tuple[int, float, float]]:
    """Return (batch size, seconds, items per second) per batch size."""
    from sid.embed.encoder import TextEncoder

    texts = read_texts(pathlib.Path(args.catalog), args.items)
    encoder = TextEncoder(torch_threads=args.threads)
    encoder.encode(texts[:256], batch_size=64)
    rows = []
    for batch_size in (int(size) for size in args.batch_sizes.split(",")):
        started = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size)
        seconds = time.perf_counter() - started
        rows.append((batch_size, seconds, len(texts) / seconds))
        print(f"text batch_size={batch_size} items={len(texts)} seconds={seconds:.1f} "
              f"items_per_second={len(texts) / seconds:.1f}", flush=True)
    return rows


def benchmark_collaborative(args: argparse.Namespace) -> dict[str, float]:
    """Time the collaborative step on Beauty; return seconds per part and the Word2Vec drift."""
    from pipelines.collaborative import _factorize, cooccurrence_counts, user_sequences, word2vec_vectors
    from pipelines.session import build_spark
    from sid.catalog import read_catalog
    from sid.config import CatalogConfig, CollaborativeConfig, SparkConfig

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        spark = build_spark(SparkConfig(master="local[2]", warehouse_dir=f"{scratch}/warehouse",
                                        shuffle_partitions=4, delta_jars_dir=str(ROOT / ".delta-jars")))
        try:
            catalog = read_catalog(spark, CatalogConfig(path=args.catalog))
            items = catalog.items.select("item_id").cache()
            items.count()

            started = time.perf_counter()
            sequences, stats = user_sequences(catalog.interactions, items)
            sequences = sequences.cache()
            figures["users"] = stats["users"]
            sequences.count()
            figures["sequences_seconds"] = time.perf_counter() - started

            started = time.perf_counter()
            counts_folder = f"{scratch}/counts"
            cooccurrence_counts(sequences, 5).write.parquet(counts_folder)
            figures["counts_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            figures["pairs"] = _factorize(counts_folder, f"{scratch}/vectors", {
                "dim": args.dim, "seed": 42, "weighting": "ppmi", "oversampling": 10, "power_iterations": 4})
            figures["svd_seconds"] = time.perf_counter() - started

            started = time.perf_counter()
            collaborative = CollaborativeConfig(method="word2vec", dim=args.dim)
            figures["word2vec_items"] = word2vec_vectors(sequences, collaborative, seed=42).count()
            figures["word2vec_seconds"] = time.perf_counter() - started
            figures["word2vec_unordered_max_difference"] = _unordered_word2vec_drift(sequences, args.dim)
        finally:
            spark.stop()
    for key, value in figures.items():
        print(f"collaborative {key}={value:.3f}", flush=True)
    return figures


def _unordered_word2vec_drift(sequences, dim: int) -> float:
    """Fit MLlib Word2Vec on 1 and on 4 input partitions; return the largest vector difference."""
    from pyspark.ml.feature import Word2Vec

    vectors = []
    for partitions in (1, 4):
        model = Word2Vec(vectorSize=dim, minCount=1, seed=42, maxIter=1, inputCol="sequence",
                         outputCol="vector").fit(sequences.repartition(partitions, "user_id"))
        vectors.append({row.word: row.vector.toArray() for row in model.getVectors().collect()})
    common = sorted(set(vectors[0]) & set(vectors[1]))
    return float(max(np.max(np.abs(vectors[0][word] - vectors[1][word])) for word in common))


def _drift_sentence(drift: float) -> str:
    if drift == 0:
        return ("MLlib Word2Vec fitted directly on 1 and on 4 input partitions, same seed, gave identical "
                "vectors in this run.")
    return ("MLlib Word2Vec fitted directly on 1 and on 4 input partitions, same seed, differs by up to "
            f"{drift:.4f} in a vector component, so it is not partition-invariant by itself; "
            "`pipelines.collaborative.word2vec_vectors` moves the sequences into one partition in a fixed "
            "order first.")


def write_section(args: argparse.Namespace, text_rows: list[tuple[int, float, float]],
                  collaborative: dict[str, float]) -> None:
    lines = [
        SECTION_START,
        "## Embed stage",
        "",
        f"Measured {datetime.date.today():%Y-%m-%d} with `.venv/bin/python benchmarks/embed.py` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; other jobs shared "
        "the machine, so the figures are upper bounds on time.",
        "",
        f"Text encoding, all-MiniLM-L6-v2, first {args.items} Beauty items, {args.threads} torch threads:",
        "",
        "| batch size | seconds | items per second |",
        "| ---: | ---: | ---: |",
        *[f"| {batch} | {seconds:.1f} | {rate:.1f} |" for batch, seconds, rate in text_rows],
        "",
        f"Collaborative step on all Beauty interactions ({collaborative['users']:.0f} users), local[2], "
        f"vectors of size {args.dim}:",
        "",
        "| part | seconds |",
        "| --- | ---: |",
        f"| user sequences | {collaborative['sequences_seconds']:.1f} |",
        f"| co-occurrence counts, window 5 ({collaborative['pairs']:.0f} item pairs) | "
        f"{collaborative['counts_seconds']:.1f} |",
        f"| seeded randomized SVD (PPMI) | {collaborative['svd_seconds']:.1f} |",
        f"| MLlib Word2Vec, 5 iterations ({collaborative['word2vec_items']:.0f} items) | "
        f"{collaborative['word2vec_seconds']:.1f} |",
        "",
        _drift_sentence(collaborative["word2vec_unordered_max_difference"]),
        SECTION_END,
    ]
    write_section(lines, start=SECTION_START, end=SECTION_END)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    text_rows = benchmark_text(args)
    collaborative = benchmark_collaborative(args)
    if not args.no_results:
        write_section(args, text_rows, collaborative)
    return 0


if __name__ == "__main__":
    sys.exit(main())
