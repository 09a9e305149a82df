"""Image modality: checks of precomputed image vectors and a local torchvision encoder.

An item whose image is missing or unusable gets a mask (False) and a reason, never a
zero vector in place of data.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "REASON_FILE_NOT_FOUND",
    "REASON_FILE_UNREADABLE",
    "REASON_MISSING",
    "REASON_NON_FINITE",
    "REASON_WRONG_LENGTH",
    "REASON_ZERO",
    "ImageEncoder",
    "check_image_vectors",
    "load_image_encoder",
]

# Reason prefixes, also the metric names of the counts (embed/image/<prefix>).
REASON_MISSING = "image missing"
REASON_WRONG_LENGTH = "image wrong length"
REASON_NON_FINITE = "image not finite"
REASON_ZERO = "image zero vector"
REASON_FILE_NOT_FOUND = "image file not found"
REASON_FILE_UNREADABLE = "image file unreadable"

# ImageNet channel statistics, which torchvision's classification weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_image_vectors(values: Sequence[Any], dim: int) -> tuple[np.ndarray, list[str | None]]:
    """Validate precomputed image vectors; return (float32 (n, dim) vectors, reasons).

    ``reasons[i]`` is None for a usable vector, else a text that starts with one of the
    REASON_* prefixes. The row of an unusable vector contains zeros and must be masked.
    """
    vectors = np.zeros((len(values), dim), dtype=np.float32)
    reasons: list[str | None] = []
    for row, value in enumerate(values):
        reason = None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            reason = REASON_MISSING
        else:
            # A null element inside the array counts as non-finite.
            array = np.asarray([np.nan if x is None else x for x in value], dtype=np.float64)
            if array.shape != (dim,):
                reason = f"{REASON_WRONG_LENGTH}: length {array.size}, expected embed.image.dim={dim}"
            elif not np.all(np.isfinite(array)):
                reason = f"{REASON_NON_FINITE}: {int(np.sum(~np.isfinite(array)))} NaN, infinite or null values"
            elif not np.any(array):
                reason = REASON_ZERO
            else:
                vectors[row] = array
        reasons.append(reason)
    return vectors, reasons


class ImageEncoder:
    """Encode image files into float32 feature vectors with a torchvision model.

    The weights come from ``model_path``, a state_dict saved with ``torch.save`` for the
    architecture ``architecture`` (a name that ``torchvision.models.get_model`` accepts);
    nothing is downloaded. The classification layer (``fc``, ``classifier`` or ``heads``)
    is replaced by the identity, so the output is the pooled feature vector. Each image is
    encoded alone, so its vector does not depend on the other images of a batch.
    """

    def __init__(self, model_path: str, *, architecture: str = "resnet18", image_size: int = 224,
                 torch_threads: int | None = None) -> None:
        import torch
        import torchvision

        if not pathlib.Path(model_path).is_file():
            raise FileNotFoundError(
                f"embed.image.model_path={model_path!r} is not a file; save the weights with "
                f"torch.save(model.state_dict(), path) for torchvision's {architecture}"
            )
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        model = torchvision.models.get_model(architecture, weights=None)
        model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
        for head in ("fc", "classifier", "heads"):
            if hasattr(model, head):
                setattr(model, head, torch.nn.Identity())
                break
        self._model = model.eval()
        self._transform = torchvision.transforms.Compose([
            torchvision.transforms.Resize(image_size),
            torchvision.transforms.CenterCrop(image_size),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])

    def encode_paths(self, paths: Sequence[str | None], *, root: str | None = None
                     ) -> tuple[list[np.ndarray | None], list[str | None]]:
        """Return (vectors, reasons): one float32 vector or None per path, with the reason."""
        import torch
        from PIL import Image, UnidentifiedImageError

        vectors: list[np.ndarray | None] = []
        reasons: list[str | None] = []
        for value in paths:
            if value is None or not str(value).strip():
                vectors.append(None)
                reasons.append(REASON_MISSING)
                continue
            path = pathlib.Path(str(value))
            if root is not None and not path.is_absolute():
                path = pathlib.Path(root) / path
            if not path.is_file():
                vectors.append(None)
                reasons.append(f"{REASON_FILE_NOT_FOUND}: {path}")
                continue
            try:
                with Image.open(path) as image:
                    pixels = self._transform(image.convert("RGB"))
            except (UnidentifiedImageError, OSError, ValueError) as error:
                vectors.append(None)
                reasons.append(f"{REASON_FILE_UNREADABLE}: {path}: {error}")
                continue
            with torch.no_grad():
                vectors.append(self._model(pixels.unsqueeze(0))[0].numpy().astype(np.float32))
            reasons.append(None)
        return vectors, reasons


_CACHE: dict[tuple, ImageEncoder] = {}


def load_image_encoder(model_path: str, *, architecture: str, image_size: int,
                       torch_threads: int | None = None) -> ImageEncoder:
    """Return a process-wide cached encoder, so a Spark Python worker loads the model once."""
    key = (model_path, architecture, image_size, torch_threads)
    if key not in _CACHE:
        _CACHE[key] = ImageEncoder(model_path, architecture=architecture, image_size=image_size,
                                   torch_threads=torch_threads)
    return _CACHE[key]
