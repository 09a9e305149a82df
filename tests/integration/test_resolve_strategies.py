"""ECM, RRS and FORGE's re-assignment inside the real job: unique SIDs, nothing lost."""

import pytest

from tests.conftest import BAD_CATALOG, RESOLVE_STRATEGIES

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PUBLISHED = len(BAD_CATALOG) - 4  # four rows of the small catalog are quarantined


@pytest.mark.parametrize("strategy", RESOLVE_STRATEGIES)
def test_unique_sids_of_raw_length(spark, strategy):
    row = spark.sql(f"""
        SELECT count(*) AS n, count(DISTINCT sid) AS sids, max(size(codes)) AS longest,
               min(size(codes)) AS shortest
        FROM sid_{strategy}.item_sids
    """).collect()[0]
    assert row.n == PUBLISHED
    assert row.sids == PUBLISHED
    assert row.shortest == 2
    assert row.longest <= 3


@pytest.mark.parametrize("strategy", RESOLVE_STRATEGIES)
def test_moved_items_keep_non_colliding_raw_sids(spark, strategy):
    rows = spark.sql(f"SELECT raw_codes, codes, resolution_step FROM sid_{strategy}.item_sids").collect()
    raw_counts = {}
    for row in rows:
        raw_counts[tuple(row.raw_codes)] = raw_counts.get(tuple(row.raw_codes), 0) + 1
    for row in rows:
        if raw_counts[tuple(row.raw_codes)] == 1:
            assert row.codes == row.raw_codes
            assert row.resolution_step == "keep"


@pytest.mark.parametrize("strategy", RESOLVE_STRATEGIES)
def test_summary_reports_zero_final_collisions(strategy_builds, strategy):
    assert f"strategy={strategy}" in strategy_builds[strategy].stderr
    assert "final_collision_rate=0.0000" in strategy_builds[strategy].stderr


def synthetic_assigned(count=400, dim=6, sizes=(4, 4, 6), seed=0):
    """Clustered latents encoded with random codebooks, so many raw SIDs collide."""
    import numpy as np
    import pandas as pd

    from sid.codes import priority_hash
    from sid.quantize import encode_residual

    rng = np.random.default_rng(seed)
    codebooks = [rng.normal(scale=1.0 / (level + 1), size=(size, dim)).astype(np.float32)
                 for level, size in enumerate(sizes)]
    latents = rng.normal(scale=0.6, size=(count, dim)).astype(np.float32)
    encoded = encode_residual(latents, codebooks, top_k=4)
    items = pd.DataFrame({
        "item_id": [f"item-{index:04d}" for index in range(count)],
        "raw_codes": [row.tolist() for row in encoded.codes.astype(int)],
        "popularity": rng.integers(0, 5, size=count).tolist(),
        "priority_hash": [priority_hash(f"item-{index:04d}", 3) for index in range(count)],
        "candidate_codes": [row.tolist() for row in encoded.candidate_codes.astype(int)],
        "candidate_distances": [row.tolist() for row in encoded.candidate_distances.astype(float)],
        "latent": [row.tolist() for row in latents],
    })
    return items, codebooks


ASSIGNED_DDL = (
    "item_id STRING, raw_codes ARRAY<INT>, popularity BIGINT, priority_hash STRING, "
    "candidate_codes ARRAY<ARRAY<INT>>, candidate_distances ARRAY<ARRAY<DOUBLE>>, latent ARRAY<FLOAT>"
)


@pytest.mark.parametrize("strategy", ("suffix", "ecm", "rrs", "forge_knn", "forge_random"))
def test_spark_stage_matches_library(spark, strategy):
    from pipelines.resolve import make_resolver, resolve_sids
    from sid.config import ResolveConfig
    from sid.resolve import resolve_items, resolve_suffix

    items, codebooks = synthetic_assigned()
    config = ResolveConfig(strategy=strategy)
    frame = spark.createDataFrame(items, schema=ASSIGNED_DDL)
    results = []
    for partitions in (1, 4):
        resolved = resolve_sids(frame.repartition(partitions), config, codebooks=codebooks, seed=3).toPandas()
        results.append(dict(zip(resolved["item_id"], map(tuple, resolved["codes"]))))
    assert results[0] == results[1]
    assert len(set(results[0].values())) == len(items)

    library_items = items.rename(columns={"latent": "embedding"})
    if strategy == "suffix":
        expected = {}
        for _, group in library_items.groupby(library_items["raw_codes"].map(tuple)):
            resolved = resolve_suffix(group)
            expected.update(zip(resolved["item_id"], map(tuple, resolved["codes"])))
    else:
        resolved = resolve_items(library_items, make_resolver(config, seed=3), codebooks=codebooks)
        expected = dict(zip(resolved["item_id"], map(tuple, resolved["codes"])))
    assert results[0] == expected


@pytest.mark.parametrize("strategy", ("suffix", "ecm", "rrs", "forge_knn", "forge_random"))
def test_spark_stage_never_reuses_taken_sids(spark, strategy):
    """An incremental batch: 100 new items resolved next to the SIDs of 300 published ones."""
    from pipelines.resolve import make_resolver, resolve_sids
    from sid.config import ResolveConfig
    from sid.resolve import resolve_items, resolve_suffix

    items, codebooks = synthetic_assigned()
    config = ResolveConfig(strategy=strategy)
    published_items, new_items = items.iloc[:300], items.iloc[300:]
    published = resolve_sids(spark.createDataFrame(published_items, schema=ASSIGNED_DDL), config,
                              codebooks=codebooks, seed=3).select("codes")
    taken = {tuple(row.codes) for row in published.collect()}
    taken_frame = spark.createDataFrame([(list(sid),) for sid in sorted(taken)], "codes ARRAY<INT>")
    frame = spark.createDataFrame(new_items, schema=ASSIGNED_DDL)
    results = []
    for partitions in (1, 4):
        resolved = resolve_sids(frame.repartition(partitions), config, codebooks=codebooks, seed=3,
                                taken=taken_frame).toPandas()
        results.append(dict(zip(resolved["item_id"], map(tuple, resolved["codes"]))))
    assert results[0] == results[1]
    assert len(results[0]) == len(new_items)
    assert len(set(results[0].values())) == len(new_items)
    assert not set(results[0].values()) & taken

    library_items = new_items.rename(columns={"latent": "embedding"})
    if strategy == "suffix":
        expected = {}
        for _, group in library_items.groupby(library_items["raw_codes"].map(tuple)):
            resolved = resolve_suffix(group, taken=taken)
            expected.update(zip(resolved["item_id"], map(tuple, resolved["codes"])))
    else:
        resolved = resolve_items(library_items, make_resolver(config, seed=3), codebooks=codebooks, taken=taken)
        expected = dict(zip(resolved["item_id"], map(tuple, resolved["codes"])))
    assert results[0] == expected
