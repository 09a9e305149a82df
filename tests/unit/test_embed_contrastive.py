"""FORGE's contrastive head: loss, determinism and the similarity gap on a Beauty slice."""

import hashlib
import pathlib

import numpy as np
import pytest

from sid.embed.contrastive import similarity_gap, train_contrastive_head

BEAUTY = (pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "amazon-beauty-2014").resolve()
SLICE_USERS = 250


def paired_blobs(seed: int, n: int = 400, dim: int = 16):
    """Pairs that share a hidden 4-d signal buried under larger noise in the other dims."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n, 4))
    left = np.hstack([signal, 3 * rng.standard_normal((n, dim - 4))])
    right = np.hstack([signal, 3 * rng.standard_normal((n, dim - 4))])
    return left, right


def test_head_is_deterministic_for_a_seed():
    left, right = paired_blobs(0)
    first, _ = train_contrastive_head(left, right, epochs=2, batch_size=64, seed=3)
    second, _ = train_contrastive_head(left, right, epochs=2, batch_size=64, seed=3)
    np.testing.assert_array_equal(first.weight, second.weight)


def test_head_output_shape_and_norm():
    left, right = paired_blobs(1)
    head, _ = train_contrastive_head(left, right, output_dim=8, epochs=1, batch_size=64, seed=0)
    out = head.apply(left)
    assert out.shape == (len(left), 8)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_head_widens_gap_on_synthetic_pairs():
    left, right = paired_blobs(2, n=600)
    train, held = slice(0, 500), slice(500, 600)
    head, stats = train_contrastive_head(left[train], right[train], epochs=20, batch_size=100,
                                         learning_rate=1e-2, seed=0)
    before = similarity_gap(left[held], right[held], seed=0)
    after = similarity_gap(head.apply(left[held]), head.apply(right[held]), seed=0)
    assert after > before
    assert stats["loss_last_epoch"] < stats["loss_first_epoch"]


def test_similarity_gap_rejects_single_row():
    with pytest.raises(ValueError, match="needs two equal sets"):
        similarity_gap(np.ones((1, 3)), np.ones((1, 3)), seed=0)


def beauty_slice_pairs(users: int):
    """Return (item ids, item texts, consecutive pairs) of the first ``users`` Beauty users."""
    import csv

    from sid.catalog import parse_category_list
    from sid.embed.text import render_item_text

    sequences = [line.split()[1:] for line in (BEAUTY / "user_sequence.txt").read_text().splitlines()[:users]]
    needed = {item for sequence in sequences for item in sequence}
    texts = {}
    with (BEAUTY / "Amazon_Beauty.item").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["item_id:token"] in needed:
                record = {"title": row["title:token"], "brand": row["brand:token"],
                          "categories": parse_category_list(row["categories:token_seq"])}
                texts[row["item_id:token"]] = render_item_text(
                    record, ["{title}", "Brand: {brand}", "Categories: {categories}"])
    ids = sorted(item for item in texts if texts[item])
    row_of = {item: row for row, item in enumerate(ids)}
    pairs = sorted({tuple(sorted((a, b))) for sequence in sequences for a, b in zip(sequence, sequence[1:])
                    if a != b and a in row_of and b in row_of})
    return ids, [texts[item] for item in ids], np.array([(row_of[a], row_of[b]) for a, b in pairs])


@pytest.mark.slow
@pytest.mark.skipif(not BEAUTY.is_dir(), reason="Amazon Beauty catalog not found")
def test_head_brings_beauty_pairs_closer():
    from sid.embed.encoder import TextEncoder

    ids, texts, pairs = beauty_slice_pairs(SLICE_USERS)
    vectors = TextEncoder(torch_threads=2).encode(texts, batch_size=64)
    held = np.array([hashlib.sha256(f"{ids[a]}:{ids[b]}".encode()).digest()[0] < 52 for a, b in pairs])
    train_pairs, held_pairs = pairs[~held], pairs[held]
    head, _ = train_contrastive_head(vectors[train_pairs[:, 0]], vectors[train_pairs[:, 1]],
                                     epochs=10, batch_size=256, seed=0)

    before = similarity_gap(vectors[held_pairs[:, 0]], vectors[held_pairs[:, 1]], seed=0)
    after = similarity_gap(head.apply(vectors[held_pairs[:, 0]]), head.apply(vectors[held_pairs[:, 1]]), seed=0)
    assert len(held_pairs) >= 50
    assert after > before
