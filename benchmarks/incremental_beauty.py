"""Nightly-run scenario on Amazon Beauty: a full build, three incremental days, a full rebuild.

A seeded slice of Beauty items is held back from the first full build and arrives in three
daily batches. A few published items leave the catalog on day 2. The script runs the real
job (scripts/spark-submit.sh jobs/build_sids.py) for each step. Then it checks that no
published SID moved, and prints the version diff of the rebuild and the output of the
README's warehouse SQL from a second SparkSession.

    .venv/bin/python benchmarks/incremental_beauty.py --work-dir /tmp/beauty_incremental
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEAUTY = (ROOT / ".." / "shared" / "data" / "amazon-beauty-2014").resolve()
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import write_section  # noqa: E402

SECTION_START = "<!-- incremental:start -->"
SECTION_END = "<!-- incremental:end -->"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/tmp/beauty_incremental", help="warehouse, MLflow and snapshots")
    parser.add_argument("--batch", type=int, default=400, help="held-back items per incremental day (default 400)")
    parser.add_argument("--leaving", type=int, default=25, help="published items that leave on day 2 (default 25)")
    parser.add_argument("--config", default=str(ROOT / "conf" / "beauty.yaml"), help="build config")
    parser.add_argument("--no-results", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def seeded_rank(item_id: str) -> str:
    return hashlib.sha256(f"incremental:{item_id}".encode()).hexdigest()


def write_snapshots(work: pathlib.Path, batch: int, leaving: int) -> dict[str, list[str]]:
    """Write Parquet snapshots base, day1..day3 and the interactions; return the item ids of each."""
    from pipelines.session import build_spark
    from sid.catalog import read_catalog
    from sid.config import CatalogConfig, SparkConfig

    spark = build_spark(SparkConfig(master="local[2]", warehouse_dir=str(work / "scratch_warehouse"),
                                    delta_jars_dir=str(ROOT / ".delta-jars"), shuffle_partitions=4))
    catalog = read_catalog(spark, CatalogConfig(path=str(BEAUTY)))
    items = catalog.items.drop("raw_record") if "raw_record" in catalog.items.columns else catalog.items
    ids = sorted((row.item_id for row in items.select("item_id").collect()), key=seeded_rank)
    held = [ids[index * batch:(index + 1) * batch] for index in range(3)]
    base = ids[3 * batch:]
    gone = set(base[:leaving])
    snapshots = {
        "base": base,
        "day1": base + held[0],
        "day2": [item for item in base if item not in gone] + held[0] + held[1],
        "day3": [item for item in base if item not in gone] + held[0] + held[1] + held[2],
    }
    for name, members in snapshots.items():
        chosen = spark.createDataFrame([(item,) for item in members], "item_id STRING")
        items.join(chosen, "item_id").write.mode("overwrite").parquet(str(work / f"snapshot_{name}"))
    catalog.interactions.write.mode("overwrite").parquet(str(work / "interactions"))
    spark.stop()
    return snapshots


def run_step(name: str, args: list[str], work: pathlib.Path) -> tuple[float, str]:
    env = dict(os.environ, SPARK_DRIVER_MEMORY="4g")
    started = time.perf_counter()
    result = subprocess.run(["bash", str(ROOT / "scripts" / "spark-submit.sh"), str(ROOT / "jobs" / "build_sids.py"),
                             *args], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    (work / f"{name}.log").write_text(result.stdout, encoding="utf-8")
    summary = [line for line in result.stdout.splitlines() if " summary " in line or "version_diff from=" in line]
    print(f"{name}: exit {result.returncode} in {seconds:.0f} s", flush=True)
    for line in summary:
        print("   ", line.split(": ", 1)[-1], flush=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed; see {work / (name + '.log')}")
    return seconds, "\n".join(line.split(": ", 1)[-1] for line in summary)


def readme_statements() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Query the results"):]
    section = section[:section.index("\n## ", 1)]
    statements = []
    for block in re.findall(r"```sql\n(.*?)```", section, flags=re.S):
        lines = [line for line in block.splitlines() if not line.strip().startswith("--")]
        statements += [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
    return statements


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    work = pathlib.Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    snapshots = write_snapshots(work, args.batch, args.leaving)

    common = ["--config", args.config, "--catalog-format", "parquet",
              "--set", f"catalog.interactions_path={work / 'interactions'}",
              "--set", f"spark.warehouse_dir={work / 'warehouse'}",
              "--set", f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
              "--set", f"mlflow.artifact_location={work / 'mlartifacts'}",
              "--set", f"run.work_dir={work / 'work'}"]
    steps = [
        ("full-base", ["--run-id", "beauty-base", "--catalog-path", str(work / "snapshot_base")]),
        ("incremental-day1", ["--mode", "incremental", "--run-id", "beauty-day1",
                              "--catalog-path", str(work / "snapshot_day1")]),
        ("incremental-day2", ["--mode", "incremental", "--run-id", "beauty-day2",
                              "--catalog-path", str(work / "snapshot_day2")]),
        ("incremental-day3", ["--mode", "incremental", "--run-id", "beauty-day3",
                              "--catalog-path", str(work / "snapshot_day3")]),
        ("full-rebuild", ["--run-id", "beauty-rebuild", "--catalog-path", str(work / "snapshot_day3")]),
    ]

    timings = {}
    summaries = {}
    base_sids = None
    for name, step_args in steps:
        timings[name], summaries[name] = run_step(name, [*common, *step_args], work)
        if name == "full-base":
            base_sids = read_sids(work, "beauty-base")

    report = check_and_query(work, base_sids, snapshots)
    print(report)
    if not args.no_results:
        write_results(args, work, snapshots, timings, summaries, report)
    return 0


def read_sids(work: pathlib.Path, version: str) -> dict[str, str]:
    from deltalake import DeltaTable

    frame = DeltaTable(str(work / "warehouse" / "sid.db" / "item_sids")).to_pandas(
        columns=["item_id", "codebook_version", "sid"])
    frame = frame[frame["codebook_version"] == version]
    return dict(zip(frame["item_id"], frame["sid"]))


def check_and_query(work: pathlib.Path, base_sids: dict[str, str], snapshots: dict[str, list[str]]) -> str:
    from pipelines.session import build_spark
    from sid.config import SparkConfig

    after = read_sids(work, "beauty-base")
    moved = sum(1 for item, sid in base_sids.items() if after.get(item) != sid)
    added = len(set(after) - set(base_sids))
    distinct = len(set(after.values()))
    lines = [f"published SIDs of beauty-base before the incremental days: {len(base_sids)}",
             f"moved after three incremental days: {moved}",
             f"rows of beauty-base after the days: {len(after)} ({added} added, {distinct} distinct SIDs)",
             f"day-3 snapshot items: {len(snapshots['day3'])}"]
    spark = build_spark(SparkConfig(master="local[2]", warehouse_dir=str(work / "warehouse"),
                                    delta_jars_dir=str(ROOT / ".delta-jars"), shuffle_partitions=4))
    retired = spark.sql("SELECT count(*) AS n FROM sid.retired_items").collect()[0].n
    lines.append(f"retired items of beauty-base: {retired}")
    for statement in readme_statements():
        frame = spark.sql(statement)
        columns = [field.name for field in frame.schema.fields]
        rows = frame.limit(6).collect()
        lines.append("")
        lines.append("sql> " + " ".join(statement.split()))
        lines.append(" | ".join(columns))
        for row in rows:
            values = [str(row[column])[:60] for column in columns]
            lines.append(" | ".join(values))
    spark.stop()
    return "\n".join(lines)


def write_results(args, work, snapshots, timings, summaries, report) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()
    table = ["| step | items in snapshot | seconds |", "| --- | ---: | ---: |"]
    sizes = {"full-base": "base", "incremental-day1": "day1", "incremental-day2": "day2",
             "incremental-day3": "day3", "full-rebuild": "day3"}
    for name, seconds in timings.items():
        table.append(f"| {name} | {len(snapshots[sizes[name]]):,} | {seconds:.0f} |")
    body = "\n".join([
        f"- Date: {now:%Y-%m-%d %H:%M} UTC; machine: {platform.machine()} Linux, {os.cpu_count()} cores; "
        f"load average at the end {load[0]:.1f}.",
        f"- Command: `.venv/bin/python benchmarks/incremental_beauty.py --batch {args.batch} "
        f"--leaving {args.leaving}`; config `conf/beauty.yaml`.",
        "",
        *table,
        "",
        "Summary lines:",
        "",
        "```",
        *[summaries[name] for name in timings],
        "```",
        "",
        "Checks and the README's SQL on the final warehouse:",
        "",
        "```",
        report,
        "```",
    ])
    lines = [SECTION_START, "## Nightly runs on Beauty (`benchmarks/incremental_beauty.py`)", "", body, SECTION_END]
    write_section(lines, start=SECTION_START, end=SECTION_END)


if __name__ == "__main__":
    sys.exit(main())
