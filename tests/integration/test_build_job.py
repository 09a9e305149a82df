"""End-to-end build of a 2,000-item Beauty slice with real Spark, Delta, Ray and MLflow."""

import re

import pytest

from tests.conftest import SLICE_ITEMS, run_job, write_config

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]


def versions(spark):
    rows = spark.sql("SELECT DISTINCT codebook_version FROM sid.item_sids ORDER BY codebook_version").collect()
    return [row.codebook_version for row in rows]


def test_one_row_per_item(spark):
    first = versions(spark)[0]
    rows = spark.sql(f"SELECT count(*) AS n, count(DISTINCT item_id) AS items FROM sid.item_sids "
                     f"WHERE codebook_version = '{first}'").collect()[0]
    assert rows.n == SLICE_ITEMS
    assert rows.items == SLICE_ITEMS


def test_sids_unique(spark):
    for version in versions(spark):
        row = spark.sql(f"SELECT count(*) AS n, count(DISTINCT sid) AS sids FROM sid.item_sids "
                        f"WHERE codebook_version = '{version}'").collect()[0]
        assert row.n == row.sids


def test_count_conserved(spark):
    runs = spark.sql("SELECT codebook_version, count(*) AS n FROM sid.item_sids GROUP BY codebook_version").collect()
    assert len(runs) == 2
    for run in runs:
        # A full build's codebook version is its run id, the key of its quarantine rows.
        quarantined = spark.sql(f"SELECT count(*) AS n FROM sid.quarantine WHERE run_id = '{run.codebook_version}'")
        assert run.n + quarantined.collect()[0].n == SLICE_ITEMS


def test_sid_format_and_lengths(spark):
    row = spark.sql("SELECT sid, codes, raw_codes FROM sid.item_sids LIMIT 1").collect()[0]
    assert len(row.codes) == 4
    assert len(row.raw_codes) == 3
    assert row.codes[:3] == row.raw_codes
    assert re.fullmatch(r"<a_\d+><b_\d+><c_\d+><d_\d+>", row.sid)


def test_rerun_with_other_partitioning_gives_same_sids(spark):
    first, second = versions(spark)
    differing = spark.sql(f"""
        SELECT count(*) AS n FROM sid.item_sids a JOIN sid.item_sids b USING (item_id)
        WHERE a.codebook_version = '{first}' AND b.codebook_version = '{second}' AND a.sid <> b.sid
    """).collect()[0].n
    assert differing == 0


def test_second_build_diffed_against_the_first(spark, beauty_builds):
    first, second = versions(spark)
    # Same items, config and seed: no SID changed, and the log reports it.
    rows = spark.sql(f"SELECT count(*) AS n FROM sid.sid_version_diff WHERE to_version = '{second}'").collect()
    assert rows[0].n == 0
    assert re.search(rf"version_diff from={first} to={second} unchanged={SLICE_ITEMS} changed=0 added=0 removed=0",
                     beauty_builds[1].stderr)


def test_codebooks_table(spark):
    rows = spark.sql("SELECT level, count(*) AS n, min(size(centroid)) AS dim FROM sid.codebooks "
                     "GROUP BY codebook_version, level").collect()
    assert {row.n for row in rows} == {256}
    assert {row.dim for row in rows} == {384}


def test_embeddings_table(spark):
    row = spark.sql("SELECT count(*) AS n, min(size(embedding)) AS dim FROM sid.item_embeddings").collect()[0]
    assert row.n == 2 * SLICE_ITEMS
    assert row.dim == 384


def test_item_lookup_by_sql(spark):
    any_item = spark.sql("SELECT item_id FROM sid.item_sids LIMIT 1").collect()[0].item_id
    rows = spark.sql(f"SELECT * FROM sid.item_sids WHERE item_id = '{any_item}'").collect()
    assert len(rows) == 2


def test_summary_logged(beauty_builds):
    for result in beauty_builds:
        assert re.search(rf"summary run_id=\S+ mode=full items_in={SLICE_ITEMS} sids_out={SLICE_ITEMS} quarantined=0",
                         result.stderr)
        for stage in ("embed", "train", "resolve", "publish"):
            assert f"stage={stage} status=finished" in result.stderr


def test_mlflow_run_has_metrics_and_config(workspace, beauty_builds):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sid-pipeline")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    run = runs[0]
    assert run.info.status == "FINISHED"
    for key in ("raw/collision_rate", "raw/distinct_sid_share", "raw/gini", "final/gini",
                "final/collision_rate", "quantize/level_0/utilization", "quantize/level_2/perplexity"):
        assert key in run.data.metrics
    assert run.data.metrics["final/collision_rate"] == 0.0
    assert run.data.params["quantize.levels"] == "3"
    artifacts = [item.path for item in client.list_artifacts(run.info.run_id)]
    assert "config.yaml" in artifacts


def test_unknown_config_key_exits_2(workspace):
    config = write_config(workspace, "typo.yaml", "quantize:\n  level: 2\n")
    result = run_job(["--config", str(config)], workspace, timeout=120)
    assert result.returncode == 2
    assert "unknown config key(s) quantize.level" in result.stderr


def test_full_beauty_catalog_reads_every_item(spark):
    from sid.catalog import read_catalog
    from sid.config import CatalogConfig
    from tests.conftest import BEAUTY

    catalog = read_catalog(spark, CatalogConfig(path=str(BEAUTY)))
    assert catalog.items.count() == 12101
    assert catalog.items.select("item_id").distinct().count() == 12101
    assert catalog.interactions.count() == 198502
    # A quoted title that spans two lines must not shift the following columns.
    row = catalog.items.where("item_id = 'B0001ZYL3Q'").select("brand", "price").collect()[0]
    assert row.brand == "Organix"
    assert row.price == 11.28
