"""Shared fixtures: one SparkSession and one Beauty slice build per test session.

Integration tests run the real job (``scripts/spark-submit.sh jobs/build_sids.py``) in a
subprocess, then read its Delta tables through the embedded Derby metastore from this
process. Derby admits one JVM at a time, so the ``spark`` fixture depends on the build
fixture: the job subprocesses finish before this process opens the metastore.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEAUTY = (ROOT / ".." / "shared" / "data" / "amazon-beauty-2014").resolve()
SLICE_ITEMS = 2000

for key, value in {
    "SPARK_LOCAL_IP": "127.0.0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)


def run_job(args: list[str], cwd: pathlib.Path, *, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run jobs/build_sids.py through scripts/spark-submit.sh in ``cwd``; return the result."""
    env = dict(os.environ, SPARK_DRIVER_MEMORY="2g")
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "spark-submit.sh"), str(ROOT / "jobs" / "build_sids.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def write_config(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def beauty_builds(workspace):
    """Build the Beauty slice twice, with 2 and 5 partitions; return both process results."""
    if not BEAUTY.is_dir():
        pytest.skip(f"Amazon Beauty catalog not found at {BEAUTY}")
    config = write_config(workspace, "slice.yaml", f"""
spark:
  master: local[2]
  warehouse_dir: {workspace / 'warehouse'}
  delta_jars_dir: {ROOT / '.delta-jars'}
  shuffle_partitions: 4
mlflow:
  tracking_uri: sqlite:///{workspace / 'mlflow.db'}
  artifact_location: {workspace / 'mlartifacts'}
catalog:
  path: {BEAUTY}
run:
  item_limit: {SLICE_ITEMS}
  work_dir: {workspace / 'work'}
ray:
  num_cpus: 2
""")
    results = []
    for partitions in (2, 5):
        result = run_job(["--config", str(config), "--set", f"run.partitions={partitions}"], workspace)
        sys.stderr.write(result.stderr[-4000:])
        assert result.returncode == 0, result.stderr[-4000:]
        results.append(result)
    return results


BAD_CATALOG = [
    {"item_id": "good-1", "title": "Rose face serum &amp; toner", "brand": "Acme", "categories": ["Beauty", "Skin Care"]},
    {"item_id": "dup-1", "title": "Argan hair oil", "brand": "Acme", "categories": ["Beauty", "Hair Care"]},
    {"item_id": "dup-1", "title": "Argan hair oil, second copy", "brand": "Acme", "categories": ["Beauty"]},
    {"item_id": "no-title", "title": None, "brand": "Lumen", "categories": ["Beauty", "Makeup"]},
    {"item_id": "no-text", "title": "", "brand": "Unknown", "categories": []},
    {"item_id": None, "title": "Orphan lipstick", "brand": "Acme", "categories": ["Beauty"]},
    {"item_id": "", "title": "Blank id nail polish", "brand": "Acme", "categories": ["Beauty"]},
]
# Enough clean items for two 8-code levels.
BAD_CATALOG += [
    {"item_id": f"filler-{index:03d}", "title": f"{shade} {product}", "brand": brand, "categories": ["Beauty", group]}
    for index, (shade, product, brand, group) in enumerate(
        (shade, product, brand, group)
        for shade in ("Coral", "Ivory", "Mocha", "Plum")
        for product, group in (("lipstick", "Makeup"), ("shampoo", "Hair Care"), ("cream", "Skin Care"),
                               ("perfume", "Fragrance"))
        for brand in ("Acme", "Lumen")
    )
]


@pytest.fixture(scope="session")
def bad_input_build(workspace):
    """Build a small JSON Lines catalog with duplicate ids, missing ids and missing text."""
    import json

    catalog = workspace / "bad_catalog.jsonl"
    catalog.write_text("\n".join(json.dumps(row) for row in BAD_CATALOG) + "\n", encoding="utf-8")
    config = write_config(workspace, "bad.yaml", f"""
spark:
  master: local[2]
  warehouse_dir: {workspace / 'warehouse'}
  delta_jars_dir: {ROOT / '.delta-jars'}
  shuffle_partitions: 4
mlflow:
  tracking_uri: sqlite:///{workspace / 'mlflow.db'}
  artifact_location: {workspace / 'mlartifacts'}
  experiment: bad-input
catalog:
  format: jsonl
  path: {catalog}
quantize:
  levels: 2
  codebook_size: 8
tables:
  database: sid_bad
run:
  work_dir: {workspace / 'work'}
ray:
  num_cpus: 2
""")
    result = run_job(["--config", str(config)], workspace)
    sys.stderr.write(result.stderr[-4000:])
    assert result.returncode == 0, result.stderr[-4000:]
    return result


RESOLVE_STRATEGIES = ("ecm", "rrs", "forge_knn")


@pytest.fixture(scope="session")
def strategy_builds(workspace, bad_input_build):
    """Build the small catalog once per re-assignment strategy, each in database sid_<strategy>."""
    results = {}
    for strategy in RESOLVE_STRATEGIES:
        result = run_job([
            "--config", str(workspace / "bad.yaml"),
            "--set", f"resolve.strategy={strategy}",
            "--set", f"tables.database=sid_{strategy}",
        ], workspace)
        sys.stderr.write(result.stderr[-2000:])
        assert result.returncode == 0, result.stderr[-4000:]
        results[strategy] = result
    return results


@pytest.fixture(scope="session")
def spark(workspace, beauty_builds, bad_input_build, strategy_builds):
    from pipelines.session import build_spark
    from sid.config import SparkConfig

    session = build_spark(SparkConfig(
        master="local[2]", warehouse_dir=str(workspace / "warehouse"),
        delta_jars_dir=str(ROOT / ".delta-jars"), shuffle_partitions=4,
    ))
    yield session
    session.stop()
