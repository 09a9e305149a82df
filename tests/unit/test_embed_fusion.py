"""Fusion of modality vectors: shapes, masks, weights, projection and PCA."""

import numpy as np
import pytest

from sid.embed.fusion import fit_pca, fuse, fused_dim, projection_matrix


def parts_and_masks(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    parts = {"text": rng.standard_normal((n, 4)), "image": rng.standard_normal((n, 3))}
    masks = {"text": np.array([True, True, False, True, False, True]),
             "image": np.array([True, False, True, True, False, False])}
    return parts, masks


def test_concat_shape_and_unit_norm():
    parts, masks = parts_and_masks()
    fused, usable = fuse(parts, masks, {"text": 1.0, "image": 2.0})
    assert fused.shape == (6, 7)
    assert fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused[usable], axis=1), 1.0, rtol=1e-6)


def test_missing_modality_slot_is_zero():
    parts, masks = parts_and_masks()
    fused, _ = fuse(parts, masks, {"text": 1.0, "image": 1.0})
    assert np.all(fused[1, 4:] == 0)
    assert np.all(fused[2, :4] == 0)


def test_row_without_modality_is_not_usable():
    parts, masks = parts_and_masks()
    fused, usable = fuse(parts, masks, {"text": 1.0, "image": 1.0})
    assert usable.tolist() == [True, True, True, True, False, True]
    assert np.all(fused[4] == 0)


def test_masked_row_ignores_its_values():
    parts, masks = parts_and_masks()
    changed = {name: part.copy() for name, part in parts.items()}
    changed["image"][1] = 1e6
    first, _ = fuse(parts, masks, {"text": 1.0, "image": 1.0})
    second, _ = fuse(changed, masks, {"text": 1.0, "image": 1.0})
    np.testing.assert_array_equal(first, second)


def test_zero_weight_modality_alone_is_not_usable():
    parts, masks = parts_and_masks()
    _, usable = fuse(parts, masks, {"text": 1.0, "image": 0.0})
    assert not usable[2]


def test_weights_set_modality_share():
    parts, masks = parts_and_masks()
    fused, _ = fuse(parts, masks, {"text": 1.0, "image": 3.0})
    text_share = np.linalg.norm(fused[0, :4]) ** 2
    assert text_share == pytest.approx(1.0 / 10.0, rel=1e-5)


def test_project_shape_and_determinism():
    parts, masks = parts_and_masks()
    projections = {name: projection_matrix(part.shape[1], 5, seed=1, modality=name) for name, part in parts.items()}
    fused, usable = fuse(parts, masks, {"text": 1.0, "image": 1.0}, mode="project", projections=projections)
    again, _ = fuse(parts, masks, {"text": 1.0, "image": 1.0}, mode="project", projections=projections)
    assert fused.shape == (6, 5)
    np.testing.assert_array_equal(fused, again)
    np.testing.assert_allclose(np.linalg.norm(fused[usable], axis=1), 1.0, rtol=1e-6)


def test_projection_differs_by_modality():
    assert not np.allclose(projection_matrix(4, 4, seed=0, modality="text"),
                           projection_matrix(4, 4, seed=0, modality="image"))


def test_project_without_matrix_raises():
    parts, masks = parts_and_masks()
    with pytest.raises(ValueError, match="needs a projection matrix"):
        fuse(parts, masks, {"text": 1.0, "image": 1.0}, mode="project")


def test_row_independent_of_batch():
    parts, masks = parts_and_masks()
    whole, _ = fuse(parts, masks, {"text": 1.0, "image": 1.0})
    single, _ = fuse({k: v[3:4] for k, v in parts.items()}, {k: v[3:4] for k, v in masks.items()},
                     {"text": 1.0, "image": 1.0})
    np.testing.assert_array_equal(whole[3:4], single)


def test_fused_dim():
    assert fused_dim({"text": 384, "collaborative": 64}, mode="concat", projection_dim=128) == 448
    assert fused_dim({"text": 384, "collaborative": 64}, mode="project", projection_dim=128) == 128


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    sample = np.random.default_rng(3).standard_normal((200, 10)) @ np.diag(np.arange(10, 0, -1))
    model = fit_pca(sample, 4)
    reference = PCA(n_components=4, svd_solver="full").fit(sample)
    np.testing.assert_allclose(np.abs(model.components), np.abs(reference.components_), atol=1e-8)
    assert model.transform(sample).shape == (200, 4)


def test_pca_signs_are_fixed():
    sample = np.random.default_rng(4).standard_normal((50, 6))
    model = fit_pca(sample, 3)
    flipped = fit_pca(sample[::-1].copy(), 3)
    np.testing.assert_allclose(model.components, flipped.components, atol=1e-10)


def test_pca_dim_too_large_raises():
    with pytest.raises(ValueError, match="pca_dim=8 must be between 1 and min"):
        fit_pca(np.ones((5, 4)), 8)
