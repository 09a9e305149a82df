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
