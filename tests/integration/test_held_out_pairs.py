"""Hit-rate pairs stay out of the co-occurring pairs that training uses.

The embedding hit rate scores the consecutive pairs that ``held_out_pairs`` chooses. So the
RQ-VAE's InfoNCE pairs (``write_training_pairs``) and the contrastive fusion head's pairs
(``write_pairs``) must not contain them, in either order.
"""

import hashlib
import json

import numpy as np
import pytest

from pipelines.fusion import write_pairs
from pipelines.retrieval import drop_held_out_pairs, held_out_pairs, training_pairs
from pipelines.sweep import write_training_pairs
from sid.codes import priority_hash
from sid.config import load_config

pytestmark = [pytest.mark.spark]

SEED = 7
HELD_OUT = 6
ITEMS = [f"item-{index:02d}" for index in range(12)]
# (user, items in order): repeats, reversed pairs and an item outside the catalog.
SEQUENCES = [
    ("u1", ["item-00", "item-01", "item-02", "item-03", "item-04"]),
    ("u2", ["item-04", "item-03", "item-05", "item-05", "item-06"]),
    ("u3", ["item-07", "item-08", "item-99", "item-09", "item-10"]),
    ("u4", ["item-11", "item-00", "item-02", "item-01", "item-06", "item-08"]),
    ("u5", ["item-10", "item-09", "item-03", "item-07"]),
]


def consecutive_pairs(catalog=ITEMS):
    """Distinct ordered (item, next item) pairs of the sequences, both items in ``catalog``."""
    pairs = set()
    for _, items in SEQUENCES:
        for item, next_item in zip(items, items[1:]):
            if item != next_item and item in catalog and next_item in catalog:
                pairs.add((item, next_item))
    return pairs


def expected_held_out(count=HELD_OUT, seed=SEED):
    """The rule in plain Python: the ``count`` pairs with the smallest sha256 of seed:i:j."""
    def key(pair):
        return hashlib.sha256(f"{seed}:{pair[0]}:{pair[1]}".encode("utf-8")).hexdigest()

    return set(sorted(consecutive_pairs(), key=key)[:count])


def unordered(pairs):
    return {tuple(sorted(pair)) for pair in pairs}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held_out_catalog")
    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        for item in ITEMS:
            handle.write(json.dumps({"item_id": item, "title": f"title of {item}"}) + "\n")
    with open(folder / "interactions.jsonl", "w", encoding="utf-8") as handle:
        for user, items in SEQUENCES:
            for position, item in enumerate(items):
                handle.write(json.dumps({"user_id": user, "item_id": item, "position": position}) + "\n")
    config = load_config(overrides={
        "catalog.format": "jsonl",
        "catalog.path": str(folder / "items.jsonl"),
        "catalog.interactions_path": str(folder / "interactions.jsonl"),
        "evaluate.hit_rate_pairs": HELD_OUT,
        "run.seed": SEED,
    })
    return folder, config


def interactions_frame(spark):
    rows = [(user, item, position) for user, items in SEQUENCES for position, item in enumerate(items)]
    return spark.createDataFrame(rows, "user_id STRING, item_id STRING, position BIGINT")


def embedded_frame(spark, dim=4):
    rng = np.random.default_rng(0)
    rows = [(item, priority_hash(item, SEED), [float(value) for value in rng.normal(size=dim)]) for item in ITEMS]
    return spark.createDataFrame(rows, "item_id STRING, priority_hash STRING, embedding ARRAY<FLOAT>")


def test_held_out_pairs_seeded_rule(spark):
    frame = held_out_pairs(interactions_frame(spark), embedded_frame(spark), max_pairs=HELD_OUT, seed=SEED)
    chosen = {(row.item_id, row.next_item_id) for row in frame.collect()}
    assert len(consecutive_pairs()) > 2 * HELD_OUT
    assert chosen == expected_held_out()


def test_drop_held_out_pairs_either_order(spark):
    held_out = spark.createDataFrame([("a", "b"), ("d", "c")], "item_id STRING, next_item_id STRING")
    pairs = spark.createDataFrame([("a", "b"), ("c", "d"), ("a", "c"), ("b", "d")], "left_id STRING, right_id STRING")
    kept = {(row.left_id, row.right_id) for row in drop_held_out_pairs(pairs, held_out).collect()}
    assert kept == {("a", "c"), ("b", "d")}


def test_all_held_out_keeps_every_pair(spark):
    pairs = spark.createDataFrame(sorted(unordered(consecutive_pairs())), "left_id STRING, right_id STRING")
    pair_count = len(consecutive_pairs())
    all_held_out = training_pairs(pairs, interactions_frame(spark), embedded_frame(spark), max_pairs=pair_count,
                                  seed=SEED)
    some_held_out = training_pairs(pairs, interactions_frame(spark), embedded_frame(spark), max_pairs=HELD_OUT,
                                   seed=SEED)

    assert {(row.left_id, row.right_id) for row in all_held_out.collect()} == unordered(consecutive_pairs())
    assert {(row.left_id, row.right_id) for row in some_held_out.collect()} == (
        unordered(consecutive_pairs()) - unordered(expected_held_out()))


def test_training_pairs_skip_held_out(spark, catalog, tmp_path):
    _, config = catalog
    embedded = embedded_frame(spark)
    sample_folder = tmp_path / "sample"
    embedded.select("priority_hash", "embedding").write.parquet(str(sample_folder))

    count = write_training_pairs(embedded, sample_folder, config, tmp_path / "pairs")
    item_of = {priority_hash(item, SEED): item for item in ITEMS}
    rows = spark.read.parquet(str(tmp_path / "pairs")).select("left_hash", "right_hash").collect()
    written = {tuple(sorted((item_of[row.left_hash], item_of[row.right_hash]))) for row in rows}

    held_out = unordered(expected_held_out())
    assert count == len(rows)
    assert written.isdisjoint(held_out)
    assert written == unordered(consecutive_pairs()) - held_out


def test_contrastive_pairs_skip_held_out(spark, catalog, tmp_path):
    from pyspark.sql import functions as F

    _, config = catalog
    fused = embedded_frame(spark).drop("priority_hash").withColumn("usable", F.lit(True))
    sequences = spark.createDataFrame([(user, items) for user, items in SEQUENCES],
                                      "user_id STRING, sequence ARRAY<STRING>")
    count = write_pairs(fused, sequences, config, tmp_path / "pairs")
    keys = {row._key for row in spark.read.parquet(str(tmp_path / "pairs")).select("_key").collect()}

    # write_pairs keeps no item ids, only the sha256 of "seed:left_id:right_id" of each pair.
    def key_of(pair):
        return hashlib.sha256(f"{SEED}:{pair[0]}:{pair[1]}".encode("utf-8")).hexdigest()

    # The pairs through item-99 are dropped with it, because it has no vector.
    held_out = unordered(expected_held_out())
    assert count == len(keys)
    assert keys.isdisjoint({key_of(pair) for pair in held_out})
    assert keys == {key_of(pair) for pair in unordered(consecutive_pairs()) - held_out}
