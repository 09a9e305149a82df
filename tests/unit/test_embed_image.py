"""Image modality: checks of precomputed vectors and the local torchvision encoder."""

import numpy as np
import pytest

from sid.embed.image import (
    REASON_FILE_NOT_FOUND,
    REASON_FILE_UNREADABLE,
    REASON_MISSING,
    REASON_NON_FINITE,
    REASON_WRONG_LENGTH,
    REASON_ZERO,
    check_image_vectors,
)


def test_valid_vector_kept():
    vectors, reasons = check_image_vectors([[0.5, -1.0, 2.0]], 3)
    assert reasons == [None]
    np.testing.assert_array_equal(vectors[0], np.array([0.5, -1.0, 2.0], dtype=np.float32))


@pytest.mark.parametrize(("value", "reason"), [
    (None, REASON_MISSING),
    ([1.0, 2.0], REASON_WRONG_LENGTH),
    ([1.0, float("nan"), 2.0], REASON_NON_FINITE),
    ([1.0, float("inf"), 2.0], REASON_NON_FINITE),
    ([1.0, None, 2.0], REASON_NON_FINITE),
    ([0.0, 0.0, 0.0], REASON_ZERO),
])
def test_bad_vector_masked_with_reason(value, reason):
    vectors, reasons = check_image_vectors([value], 3)
    assert reasons[0].startswith(reason)
    assert np.all(vectors[0] == 0)


def test_wrong_length_reason_names_lengths():
    _, reasons = check_image_vectors([[1.0, 2.0]], 3)
    assert reasons[0] == "image wrong length: length 2, expected embed.image.dim=3"


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """A seeded, untrained resnet18 state_dict saved as a local file."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "resnet18.pt"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), path)
    return path


def test_encoder_reads_local_weights(resnet_weights, tmp_path):
    from PIL import Image

    from sid.embed.image import ImageEncoder

    Image.new("RGB", (40, 30), (200, 30, 90)).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    encoder = ImageEncoder(str(resnet_weights), architecture="resnet18", image_size=32)
    vectors, reasons = encoder.encode_paths(["red.png", "missing.png", "broken.jpg", None], root=str(tmp_path))

    assert reasons[0] is None
    assert vectors[0].shape == (512,)
    assert reasons[1].startswith(REASON_FILE_NOT_FOUND)
    assert reasons[2].startswith(REASON_FILE_UNREADABLE)
    assert reasons[3] == REASON_MISSING
    assert vectors[1] is None
    assert vectors[2] is None
    assert vectors[3] is None


def test_encoder_output_independent_of_batch(resnet_weights, tmp_path):
    from PIL import Image

    from sid.embed.image import ImageEncoder

    Image.new("RGB", (32, 32), (10, 120, 200)).save(tmp_path / "blue.png")
    Image.new("RGB", (32, 32), (250, 250, 0)).save(tmp_path / "yellow.png")
    encoder = ImageEncoder(str(resnet_weights), image_size=32)
    alone, _ = encoder.encode_paths(["blue.png"], root=str(tmp_path))
    together, _ = encoder.encode_paths(["yellow.png", "blue.png"], root=str(tmp_path))
    np.testing.assert_array_equal(alone[0], together[1])


def test_encoder_missing_weights_raises(tmp_path):
    pytest.importorskip("torchvision")
    from sid.embed.image import ImageEncoder

    with pytest.raises(FileNotFoundError, match="embed.image.model_path="):
        ImageEncoder(str(tmp_path / "nowhere.pt"))
