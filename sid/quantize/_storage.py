"""Quantizer folders: arrays in ``arrays.npz`` and settings in ``quantizer.json``, no pickle."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from sid.errors import QuantizerError

__all__ = ["read_quantizer_folder", "read_quantizer_meta", "write_quantizer_folder"]

META_FILE = "quantizer.json"
ARRAYS_FILE = "arrays.npz"


def write_quantizer_folder(
    path: str | pathlib.Path, *, method: str, format_version: int, meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Write ``arrays`` and ``meta`` into folder ``path``, replacing files of an earlier save."""
    folder = pathlib.Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / ARRAYS_FILE, **{name: np.ascontiguousarray(value) for name, value in arrays.items()})
    payload = {"format_version": format_version, "method": method, **meta}
    (folder / META_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")


def read_quantizer_meta(path: str | pathlib.Path) -> dict[str, Any]:
    """Return the settings stored by :func:`write_quantizer_folder`, or raise QuantizerError."""
    folder = pathlib.Path(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise QuantizerError(f"no {META_FILE} in {folder}; pass a folder written by a quantizer's save(path)")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise QuantizerError(f"{meta_path} is not valid JSON: {error}; save the quantizer again") from error


def read_quantizer_folder(
    path: str | pathlib.Path, *, method: str, format_versions: tuple[int, ...],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return (meta, arrays) of a folder saved by ``method`` in one of ``format_versions``."""
    folder = pathlib.Path(path)
    meta = read_quantizer_meta(folder)
    if meta.get("method") != method or meta.get("format_version") not in format_versions:
        raise QuantizerError(
            f"{folder} contains method={meta.get('method')!r} format_version={meta.get('format_version')!r}; "
            f"expected method={method!r} with format_version in {list(format_versions)}. "
            "Load it with the quantizer class of that method (sid.quantize.load_quantizer picks it), "
            "or retrain the codebooks with this version"
        )
    arrays_path = folder / ARRAYS_FILE
    if not arrays_path.is_file():
        raise QuantizerError(f"no {ARRAYS_FILE} in {folder}; the save was interrupted, save the quantizer again")
    with np.load(arrays_path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    return meta, arrays
