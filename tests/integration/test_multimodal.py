"""Multimodal embed stage: masks, quarantine, coverage metrics and collaborative determinism."""

import pytest

from tests.conftest import BEAUTY, IMAGE_DIM, multimodal_catalog

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def embedding_rows(spark):
    rows = spark.sql("SELECT item_id, embedding, text_embedding, image_embedding, collaborative_embedding, "
                     "modality_mask, mask_reasons FROM sid_mm.item_embeddings").collect()
    return {row.item_id: row for row in rows}


def test_item_without_modality_quarantined(spark):
    rows = spark.sql("SELECT item_id, stage, reason FROM sid_mm.quarantine").collect()
    assert [(row.item_id, row.stage) for row in rows] == [("mm-nothing", "embed")]
    assert rows[0].reason.startswith("no usable modality: text missing; image missing")


def test_conservation_with_embed_quarantine(spark):
    items, _ = multimodal_catalog()
    published = spark.sql("SELECT count(*) AS n FROM sid_mm.item_sids").collect()[0].n
    quarantined = spark.sql("SELECT count(*) AS n FROM sid_mm.quarantine").collect()[0].n
    assert published + quarantined == len(items)


def test_bad_image_vectors_masked_with_reason(spark):
    rows = embedding_rows(spark)
    assert rows["mm-wrong-length"].image_embedding is None
    assert not rows["mm-wrong-length"].modality_mask.image
    assert rows["mm-wrong-length"].mask_reasons[0].startswith("image wrong length: length 5")
    assert rows["mm-nan"].image_embedding is None
    assert rows["mm-nan"].mask_reasons[0].startswith("image not finite")


def test_image_only_item_kept_without_text(spark):
    row = embedding_rows(spark)["mm-image-only"]
    assert row.text_embedding is None
    assert row.modality_mask.image
    assert len(row.image_embedding) == IMAGE_DIM


def test_item_absent_from_interactions_masked(spark):
    row = embedding_rows(spark)["filler-031"]
    assert row.collaborative_embedding is None
    assert "collaborative missing: no co-occurring interaction" in row.mask_reasons


def test_fused_vector_has_pca_size(spark):
    rows = embedding_rows(spark)
    assert {len(row.embedding) for row in rows.values()} == {8}
    assert len(rows["filler-001"].collaborative_embedding) == 4


def test_coverage_metrics_logged(multimodal_build, workspace):
    import sqlite3

    with sqlite3.connect(workspace / "mlflow.db") as connection:
        metrics = dict(connection.execute(
            "SELECT m.key, m.value FROM latest_metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
            "JOIN experiments e ON r.experiment_id = e.experiment_id WHERE e.name = 'multimodal'"
        ).fetchall())
    items, _ = multimodal_catalog()
    assert metrics["embed/items"] == len(items)
    assert metrics["embed/quarantined"] == 1
    assert metrics["embed/coverage/image"] == pytest.approx((len(items) - 3) / len(items))
    assert metrics["embed/masked/image_wrong_length"] == 1
    assert metrics["embed/masked/image_not_finite"] == 1
    assert metrics["embed/collaborative/single_interaction_users"] == 1
    assert "embed/contrastive/gap_after" in metrics


def beauty_slice_sequences(spark, partitions: int):
    from pipelines.collaborative import user_sequences
    from sid.catalog import read_catalog
    from sid.config import CatalogConfig

    catalog = read_catalog(spark, CatalogConfig(path=str(BEAUTY)))
    users = catalog.interactions.select("user_id").distinct().orderBy("user_id").limit(2000)
    interactions = catalog.interactions.join(users, "user_id").repartition(partitions)
    sequences, _ = user_sequences(interactions, catalog.items.select("item_id"))
    return sequences


@pytest.mark.skipif(not BEAUTY.is_dir(), reason="Amazon Beauty catalog not found")
@pytest.mark.parametrize("method", ["word2vec", "svd_counts"])
def test_collaborative_step_independent_of_partitions(spark, method):
    from pipelines.collaborative import cooccurrence_counts, word2vec_vectors
    from sid.config import CollaborativeConfig

    results = []
    for partitions in (1, 4):
        sequences = beauty_slice_sequences(spark, partitions)
        if method == "word2vec":
            frame = word2vec_vectors(sequences, CollaborativeConfig(method="word2vec", dim=16, iterations=1), seed=5)
            results.append({row.item_id: list(row.collaborative_embedding) for row in frame.collect()})
        else:
            frame = cooccurrence_counts(sequences, window=3)
            results.append({(row.left_id, row.right_id): row["count"] for row in frame.collect()})
    assert len(results[0]) > 100
    assert results[0] == results[1]
