"""SID quality metrics, the quality gate and evaluate_sids in the real jobs."""

import mlflow
import pytest

from tests.conftest import BAD_CATALOG, EXTERNAL_MAPPING_ITEMS, SLICE_ITEMS, run_job, write_config

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PUBLISHED = len(BAD_CATALOG) - 4  # four rows of the small catalog are quarantined
PLOTS = {"code_usage_per_level.png", "lorenz_curve.png", "bucket_size_distribution.png", "hit_rate_vs_k.png"}


def job_output(result):
    """Return stdout and stderr of a job: spark-submit sends the driver's Python stderr to stdout."""
    return result.stdout + result.stderr


def metrics_of(spark, table, version):
    rows = spark.sql(f"SELECT metric, value FROM {table} WHERE codebook_version = '{version}'").collect()
    return {row.metric: row.value for row in rows}


def slice_versions(spark):
    rows = spark.sql("SELECT DISTINCT codebook_version FROM sid.item_sids ORDER BY codebook_version").collect()
    return [row.codebook_version for row in rows]


def test_sid_metrics_rows_per_version(spark):
    for version in slice_versions(spark):
        metrics = metrics_of(spark, "sid.sid_metrics", version)
        for key in ("raw/gini", "final/gini", "final/collision_rate", "final/unique_share", "final/largest_bucket",
                    "final/entropy_ratio", "final/level_0/utilization", "final/level_2/perplexity",
                    "final/reconstruction_mse", "final/reconstruction_relative", "purity/level_1",
                    "purity/level_2", "neighbour_recall/at_10", "coverage/catalog_share"):
            assert key in metrics, key
        assert metrics["final/collision_rate"] == 0.0
        assert metrics["final/unique_share"] == 1.0
        assert metrics["coverage/covered_items"] == SLICE_ITEMS


def test_hit_rate_has_raw_ceiling(spark):
    metrics = metrics_of(spark, "sid.sid_metrics", slice_versions(spark)[0])
    assert metrics["hit_rate/pairs"] > 100
    for k in (10, 20, 100):
        assert 0.0 <= metrics[f"hit_rate/sid/at_{k}"] <= 1.0
        assert 0.0 <= metrics[f"hit_rate/raw/at_{k}"] <= 1.0
    assert metrics["hit_rate/sid/at_10"] <= metrics["hit_rate/sid/at_100"]
    assert metrics["hit_rate/raw/at_10"] <= metrics["hit_rate/raw/at_100"]


def test_partitioning_keeps_metrics(spark):
    first, second = slice_versions(spark)
    left = metrics_of(spark, "sid.sid_metrics", first)
    right = metrics_of(spark, "sid.sid_metrics", second)
    for key in ("final/gini", "raw/gini", "purity/level_1", "hit_rate/sid/at_10", "neighbour_recall/at_10"):
        assert left[key] == pytest.approx(right[key], abs=1e-9), key


def test_mlflow_has_plots_and_report(workspace, beauty_builds):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sid-pipeline")
    for run in client.search_runs([experiment.experiment_id]):
        artifacts = {item.path.split("/")[-1] for item in client.list_artifacts(run.info.run_id, "evaluation")}
        assert PLOTS | {"report.md"} <= artifacts
        assert "hit_rate/sid/at_10" in run.data.metrics
        assert run.data.tags["quality_gate"] == "passed"


def test_newest_passing_version_active(spark):
    newest = slice_versions(spark)[-1]
    run_ids = spark.sql(f"SELECT DISTINCT mlflow_run_id FROM sid.item_sids WHERE codebook_version = '{newest}'")
    active = spark.sql("SELECT * FROM sid.active_version").collect()
    assert len(active) == 1
    assert active[0].database == "sid"
    assert active[0].codebook_version == newest
    assert active[0].mlflow_run_id == run_ids.collect()[0].mlflow_run_id
    current = spark.sql("SELECT count(*) AS n, count(DISTINCT codebook_version) AS versions "
                        "FROM sid.item_sids_current").collect()[0]
    assert current.n == SLICE_ITEMS
    assert current.versions == 1


def test_gate_failure_exits_3_naming_metric(gate_failure_build):
    output = job_output(gate_failure_build)
    assert gate_failure_build.returncode == 3
    assert "failed the quality gate and was not activated" in output
    assert "final/reconstruction_relative=" in output
    assert "is above max 0.0" in output


def test_gate_failure_keeps_previous_version(spark):
    published = spark.sql("SELECT DISTINCT codebook_version FROM sid_bad.item_sids").collect()
    rejected = spark.sql("SELECT DISTINCT codebook_version FROM sid_bad.item_sids_rejected").collect()
    active = spark.sql("SELECT codebook_version FROM sid_bad.active_version").collect()
    assert [row.codebook_version for row in active] == [published[0].codebook_version]
    assert rejected[0].codebook_version != published[0].codebook_version
    assert spark.sql("SELECT count(*) AS n FROM sid_bad.item_sids_current").collect()[0].n == PUBLISHED
    # The rejected version's metrics are recorded all the same.
    assert "final/reconstruction_relative" in metrics_of(spark, "sid_bad.sid_metrics", rejected[0].codebook_version)


def test_external_csv_reports_coverage(spark, external_evaluation):
    metrics = metrics_of(spark, "sid_bad.sid_metrics", "external:external_sids.csv")
    assert metrics["coverage/mapped_items"] == EXTERNAL_MAPPING_ITEMS + 1
    assert metrics["coverage/covered_items"] == EXTERNAL_MAPPING_ITEMS
    assert metrics["coverage/unknown_items"] == 1
    assert metrics["coverage/catalog_share"] == pytest.approx(EXTERNAL_MAPPING_ITEMS / PUBLISHED)
    assert 0.0 < metrics["final/reconstruction_relative"] < 1.0
    assert "final/gini" in metrics
    assert "metrics cover 30 of 35 catalog items" in job_output(external_evaluation)


def test_external_mixed_lengths_rejected(workspace):
    mapping = write_config(workspace, "mixed.csv", "item_id,codes\nfiller-000,\"1,2,3\"\nfiller-001,\"1,2\"\n")
    result = run_job([
        "--mapping", str(mapping),
        "--set", f"spark.warehouse_dir={workspace / 'warehouse_mixed'}",
        "--set", f"mlflow.tracking_uri=sqlite:///{workspace / 'mlflow_mixed.db'}",
    ], workspace, timeout=300, script="evaluate_sids.py")
    assert result.returncode == 2
    assert "mixes SID lengths {2: 1, 3: 1}" in job_output(result)
