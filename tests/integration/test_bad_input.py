"""Bad catalog rows end in quarantine with a reason; bad catalogs and configs fail clearly."""

import pytest

from tests.conftest import BAD_CATALOG, run_job, write_config

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def quarantine(spark):
    rows = spark.sql("SELECT item_id, stage, reason, raw_record FROM sid_bad.quarantine").collect()
    return {(row.item_id, row.reason.split(":")[0]) for row in rows}


def test_conservation_with_quarantine(spark):
    published = spark.sql("SELECT count(*) AS n FROM sid_bad.item_sids").collect()[0].n
    quarantined = spark.sql("SELECT count(*) AS n FROM sid_bad.quarantine").collect()[0].n
    assert published + quarantined == len(BAD_CATALOG)
    assert quarantined == 4


def test_duplicate_id_keeps_one_row(spark):
    assert ("dup-1", "duplicate item_id") in quarantine(spark)
    assert spark.sql("SELECT count(*) AS n FROM sid_bad.item_sids WHERE item_id = 'dup-1'").collect()[0].n == 1


def test_missing_ids_quarantined(spark):
    reasons = quarantine(spark)
    assert (None, "missing item_id") in reasons
    assert ("", "missing item_id") in reasons


def test_no_text_quarantined(spark):
    assert ("no-text", "no text") in quarantine(spark)


def test_missing_title_uses_other_fields(spark):
    row = spark.sql("SELECT item_text FROM sid_bad.item_embeddings WHERE item_id = 'no-title'").collect()[0]
    assert row.item_text == "Brand: Lumen. Categories: Beauty > Makeup"


def test_html_entities_decoded(spark):
    row = spark.sql("SELECT item_text FROM sid_bad.item_embeddings WHERE item_id = 'good-1'").collect()[0]
    assert row.item_text.startswith("Rose face serum & toner.")


def test_raw_record_kept(spark):
    row = spark.sql("SELECT raw_record FROM sid_bad.quarantine WHERE item_id = 'no-text'").collect()[0]
    assert '"brand":"Unknown"' in row.raw_record


def test_empty_catalog_fails_with_message(workspace):
    empty = workspace / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    config = write_config(workspace, "empty.yaml", f"""
spark:
  master: local[1]
  warehouse_dir: {workspace / 'warehouse_empty'}
catalog:
  format: jsonl
  path: {empty}
mlflow:
  tracking_uri: sqlite:///{workspace / 'mlflow_empty.db'}
""")
    result = run_job(["--config", str(config)], workspace, timeout=300)
    assert result.returncode == 2
    assert "holds no item rows" in result.stderr


def test_missing_catalog_folder_fails_with_message(workspace):
    result = run_job(["--catalog-path", str(workspace / "nowhere"), "--set",
                      f"spark.warehouse_dir={workspace / 'warehouse_missing'}", "--set",
                      f"mlflow.tracking_uri=sqlite:///{workspace / 'mlflow_missing.db'}"], workspace, timeout=300)
    assert result.returncode == 2
    assert "is not a folder" in result.stderr
