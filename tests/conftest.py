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

from pipelines.session import loopback_environment

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEAUTY = (ROOT / ".." / "shared" / "data" / "amazon-beauty-2014").resolve()
SLICE_ITEMS = 2000

loopback_environment()
for key, value in {
    # Cut Ray Train's fixed start-up and shutdown overhead on small test runs.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}.items():
    os.environ.setdefault(key, value)


def run_job(args: list[str], cwd: pathlib.Path, *, timeout: int = 900,
            script: str = "build_sids.py") -> subprocess.CompletedProcess:
    """Run ``jobs/<script>`` through scripts/spark-submit.sh in ``cwd``; return the result.

    The job's stdout and stderr are captured as one stream, in both ``result.stdout`` and
    ``result.stderr``, because Spark, Ray and the job's logging each pick their own stream.
    """
    env = dict(os.environ, SPARK_DRIVER_MEMORY="2g")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "spark-submit.sh"), str(ROOT / "jobs" / script), *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )
    result.stderr = result.stdout
    return result


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


# Too strict on purpose: every codebook loses some reconstruction energy.
STRICT_GATE = '{"final/collision_rate": {"max": 0.0}, "final/reconstruction_relative": {"max": 0.0}}'


@pytest.fixture(scope="session")
def gate_failure_build(workspace, bad_input_build):
    """Rebuild the small catalog with a gate it cannot pass; return the process result.

    The rejected version's SIDs go to separate item_sids and quarantine tables of sid_bad,
    so the bad-input tests still see one version, while active_version and sid_metrics are
    the ones the passing build wrote.
    """
    result = run_job([
        "--config", str(workspace / "bad.yaml"),
        "--set", f"gate.thresholds={STRICT_GATE}",
        "--set", "tables.item_sids=item_sids_rejected",
        "--set", "tables.quarantine=quarantine_rejected",
    ], workspace)
    sys.stderr.write(result.stderr[-2000:])
    return result


EXTERNAL_MAPPING_ITEMS = 30


@pytest.fixture(scope="session")
def external_evaluation(workspace, bad_input_build):
    """Evaluate an external CSV mapping of the small catalog: 30 published items plus one
    item the catalog lacks, with SID strings of three levels. Return the process result."""
    import csv
    import hashlib

    from sid.codes import format_sid

    published = sorted(
        {row["item_id"] for row in BAD_CATALOG if row["item_id"]} - {"no-text"}
    )[:EXTERNAL_MAPPING_ITEMS]
    path = workspace / "external_sids.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "sid"])
        for item_id in [*published, "not-in-catalog"]:
            digest = hashlib.sha256(item_id.encode("utf-8")).digest()
            writer.writerow([item_id, format_sid([digest[0] % 4, digest[1] % 4, digest[2] % 8])])
    result = run_job(["--config", str(workspace / "bad.yaml"), "--mapping", str(path)], workspace,
                     script="evaluate_sids.py")
    sys.stderr.write(result.stderr[-2000:])
    assert result.returncode == 0, result.stderr[-4000:]
    return result


IMAGE_DIM = 8


def multimodal_catalog() -> tuple[list[dict], list[dict]]:
    """Return (items, interactions) of a small catalog with image vectors and bad inputs.

    The filler items of BAD_CATALOG get valid 8-d image vectors. mm-wrong-length and mm-nan
    have unusable ones, and mm-image-only has no text. mm-nothing has no text, no image and
    no interactions. filler-031 never occurs in interactions, and user-single has one.
    """
    import hashlib

    fillers = [dict(row) for row in BAD_CATALOG if str(row["item_id"]).startswith("filler-")]
    for row in fillers:
        digest = hashlib.sha256(row["item_id"].encode()).digest()
        row["image"] = [digest[i] / 255.0 - 0.5 for i in range(IMAGE_DIM)]
    items = fillers + [
        {"item_id": "mm-wrong-length", "title": "Plum nail lacquer", "brand": "Acme",
         "categories": ["Beauty", "Nails"], "image": [0.1, 0.2, 0.3, 0.4, 0.5]},
        {"item_id": "mm-nan", "title": "Ivory face powder", "brand": "Lumen", "categories": ["Beauty", "Makeup"],
         "image": [float("nan")] + [0.1] * (IMAGE_DIM - 1)},
        {"item_id": "mm-image-only", "title": "", "brand": "Unknown", "categories": [],
         "image": [0.3] * IMAGE_DIM},
        {"item_id": "mm-nothing", "title": "", "brand": "Unknown", "categories": [], "image": None},
    ]
    ids = [row["item_id"] for row in fillers if row["item_id"] != "filler-031"]
    ids += ["mm-wrong-length", "mm-nan", "mm-image-only"]
    interactions = []
    for user in range(12):
        for position in range(5):
            item_id = ids[(user * 3 + position * (user % 5 + 1)) % len(ids)]
            interactions.append({"user_id": f"user-{user:02d}", "item_id": item_id, "position": position})
    interactions.append({"user_id": "user-single", "item_id": "filler-000", "position": 0})
    return items, interactions


@pytest.fixture(scope="session")
def multimodal_build(workspace):
    """Build the multimodal catalog with text, image vectors, SVD vectors, PCA and the
    contrastive head into database sid_mm; return the process result."""
    import json

    items, interactions = multimodal_catalog()
    (workspace / "mm_items.jsonl").write_text("\n".join(json.dumps(row) for row in items) + "\n", encoding="utf-8")
    (workspace / "mm_interactions.jsonl").write_text(
        "\n".join(json.dumps(row) for row in interactions) + "\n", encoding="utf-8")
    config = write_config(workspace, "mm.yaml", f"""
spark:
  master: local[2]
  warehouse_dir: {workspace / 'warehouse'}
  delta_jars_dir: {ROOT / '.delta-jars'}
  shuffle_partitions: 4
mlflow:
  tracking_uri: sqlite:///{workspace / 'mlflow.db'}
  artifact_location: {workspace / 'mlartifacts'}
  experiment: multimodal
catalog:
  format: jsonl
  path: {workspace / 'mm_items.jsonl'}
  interactions_path: {workspace / 'mm_interactions.jsonl'}
embed:
  image: {{source: vector, column: image, dim: {IMAGE_DIM}}}
  collaborative: {{method: svd, dim: 4, window: 2}}
  fusion:
    pca_dim: 8
    contrastive: {{enabled: true, epochs: 3, batch_size: 8, holdout_fraction: 0.3}}
quantize:
  levels: 2
  codebook_size: 8
tables:
  database: sid_mm
run:
  work_dir: {workspace / 'work'}
ray:
  num_cpus: 2
""")
    result = run_job(["--config", str(config)], workspace)
    sys.stderr.write(result.stderr[-4000:])
    assert result.returncode == 0, result.stderr[-4000:]
    return result


# Incremental scenario on the small catalog. The fillers 26..31 are held back from the
# first full build and arrive in two daily batches. Fillers 0 and 1 leave on day 1, and
# filler 0 comes back on day 2. A full rebuild of the last snapshot follows.
HELD_BACK = [f"filler-{index:03d}" for index in range(26, 32)]


def incremental_snapshots() -> dict[str, list[dict]]:
    base = [row for row in BAD_CATALOG if row["item_id"] not in HELD_BACK]
    day1 = [row for row in base if row["item_id"] not in ("filler-000", "filler-001")]
    day1 += [row for row in BAD_CATALOG if row["item_id"] in HELD_BACK[:3]]
    day2 = day1 + [row for row in BAD_CATALOG if row["item_id"] in HELD_BACK[3:] or row["item_id"] == "filler-000"]
    return {"base": base, "day1": day1, "day2": day2}


@pytest.fixture(scope="session")
def incremental_runs(workspace, bad_input_build):
    """Full build, two incremental days (day 2 run twice), a full rebuild and an export,
    all in database sid_inc. Return the process results by name."""
    import json

    paths = {}
    for name, rows in incremental_snapshots().items():
        paths[name] = workspace / f"inc_{name}.jsonl"
        paths[name].write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    common = ["--config", str(workspace / "bad.yaml"), "--set", "tables.database=sid_inc"]
    steps = {
        "base": ["--run-id", "inc-base", "--catalog-path", str(paths["base"])],
        "day1": ["--mode", "incremental", "--run-id", "inc-day1", "--catalog-path", str(paths["day1"])],
        "day2": ["--mode", "incremental", "--run-id", "inc-day2", "--catalog-path", str(paths["day2"])],
        "day2_rerun": ["--mode", "incremental", "--run-id", "inc-day2", "--stage", "publish",
                       "--catalog-path", str(paths["day2"])],
        "rebuild": ["--run-id", "inc-rebuild", "--catalog-path", str(paths["day2"])],
    }
    results = {}
    for name, args in steps.items():
        results[name] = run_job([*common, *args], workspace)
        sys.stderr.write(results[name].stderr[-2000:])
        assert results[name].returncode == 0, f"{name}: " + results[name].stderr[-4000:]
    results["export"] = run_job([*common, "--output", str(workspace / "export_inc"), "--format", "jsonl"],
                                workspace, script="export_sids.py")
    assert results["export"].returncode == 0, results["export"].stderr[-4000:]
    return results


@pytest.fixture(scope="session")
def killed_and_rerun(workspace, bad_input_build):
    """Start a build of the small catalog in database sid_kill, kill it with SIGKILL when
    the train stage starts, then rerun the same run id. Return (kill log, rerun result)."""
    import signal

    args = ["--config", str(workspace / "bad.yaml"), "--set", "tables.database=sid_kill", "--run-id", "kill-1"]
    env = dict(os.environ, SPARK_DRIVER_MEMORY="2g")
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "spark-submit.sh"), str(ROOT / "jobs" / "build_sids.py"), *args],
        cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "stage=train status=started" in line:
            # The whole process group: the driver, its JVM and the Python workers.
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.stdout.close()
    process.wait(timeout=120)
    killed_log = "".join(lines)
    assert "stage=train status=started" in killed_log, killed_log[-4000:]
    rerun = run_job(args, workspace)
    sys.stderr.write(rerun.stderr[-2000:])
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return killed_log, rerun


@pytest.fixture(scope="session")
def spark(workspace, beauty_builds, bad_input_build, strategy_builds, gate_failure_build, external_evaluation,
          multimodal_build, incremental_runs, killed_and_rerun):
    from pipelines.session import build_spark
    from sid.config import SparkConfig

    session = build_spark(SparkConfig(
        master="local[2]", warehouse_dir=str(workspace / "warehouse"),
        delta_jars_dir=str(ROOT / ".delta-jars"), shuffle_partitions=4,
    ))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray runtime, shared by every test of the session that needs Ray.

    Four logical CPUs: two Ray Train workers take one each and Ray Data's reads need more.
    """
    import ray

    from pipelines.session import init_ray
    from sid.config import RayConfig

    init_ray(RayConfig(num_cpus=4))
    yield ray
    ray.shutdown()
