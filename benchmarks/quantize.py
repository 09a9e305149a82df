"""Benchmark the quantizers at equal bits against faiss, on synthetic and Beauty embeddings.

Runbook (repository root, after ``bash scripts/install.sh``; Beauty needs a finished build
so that ``warehouse/sid.db/item_embeddings`` exists):

    .venv/bin/python benchmarks/quantize.py                    # both datasets
    .venv/bin/python benchmarks/quantize.py --rows 50000       # smaller synthetic set
    .venv/bin/python benchmarks/quantize.py --skip-beauty
    .venv/bin/python benchmarks/quantize.py --rows 50000 --rqvae-epochs 3 --threads 1   # loaded machine

For each dataset, in the same process and on the same vectors: fit time and relative
reconstruction error (mean ||x - x_hat||^2 / mean ||x||^2) of ResidualKMeans, RQVAE and
bare faiss ResidualQuantizer (beam 5) with 3 levels of 256 codes (24 bits), and encode
throughput of ResidualKMeans.encode against bare faiss (greedy IndexFlatL2 per level, and
the ResidualQuantizer's beam encoder). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import time

import numpy as np

SIZES = (256, 256, 256)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def synthetic(rows: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Gaussian mixture of 1,000 components: float32 (rows, dim)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(1000, dim))
    return (means[rng.integers(0, 1000, size=rows)] + rng.normal(size=(rows, dim))).astype(np.float32)


def beauty_embeddings(warehouse: pathlib.Path) -> np.ndarray | None:
    """Return the latest embedding_version of the item_embeddings Delta table, or None."""
    from deltalake import DeltaTable

    path = warehouse / "sid.db" / "item_embeddings"
    if not path.is_dir():
        return None
    table = DeltaTable(str(path)).to_pyarrow_table(columns=["item_id", "embedding", "embedding_version"])
    versions = table.column("embedding_version").to_pylist()
    latest = max(versions)
    rows = [index for index, version in enumerate(versions) if version == latest]
    return np.asarray(table.column("embedding").take(rows).to_pylist(), dtype=np.float32)


def relative_error(vectors: np.ndarray, reconstruction: np.ndarray) -> float:
    data = vectors.astype(np.float64)
    return float(((data - reconstruction) ** 2).sum(axis=1).mean() / (data**2).sum(axis=1).mean())


def timed(function, label: str):
    started = time.perf_counter()
    value = function()
    elapsed = time.perf_counter() - started
    print(f"  {label}: {elapsed:.1f} s", flush=True)
    return value, elapsed


def bench_dataset(name: str, vectors: np.ndarray, *, rqvae_epochs: int) -> list[tuple]:
    """Return table rows (dataset, method, fit s, relative error, encode rows/s)."""
    import faiss

    from sid.quantize import RQVAE, ResidualKMeans

    rows = []
    n, dim = vectors.shape

    kmeans, fit_seconds = timed(lambda: ResidualKMeans(codebook_sizes=SIZES, seed=0).fit(vectors), f"{name} ResidualKMeans fit")
    result, encode_seconds = timed(lambda: kmeans.encode(vectors), f"{name} ResidualKMeans encode")
    rows.append((name, "ResidualKMeans (sid)", fit_seconds, relative_error(vectors, kmeans.decode(result.codes)),
                 n / encode_seconds))

    latent = min(64, dim // 2)
    rqvae = RQVAE(codebook_sizes=SIZES, hidden_dims=(256, 256), latent_dim=latent, epochs=rqvae_epochs,
                  batch_size=2048, seed=0, device="cpu", show_progress=False)
    _, fit_seconds = timed(lambda: rqvae.fit(vectors), f"{name} RQVAE fit")
    result, encode_seconds = timed(lambda: rqvae.encode(vectors), f"{name} RQVAE encode")
    rows.append((name, f"RQVAE (sid, {rqvae_epochs} epochs, latent {latent})", fit_seconds,
                 relative_error(vectors, rqvae.decode(result.codes)), n / encode_seconds))

    rq = faiss.ResidualQuantizer(dim, len(SIZES), 8)
    rq.max_beam_size = 5
    _, fit_seconds = timed(lambda: rq.train(vectors), f"{name} faiss RQ train")
    packed, encode_seconds = timed(lambda: rq.compute_codes(vectors), f"{name} faiss RQ encode")
    rows.append((name, "faiss ResidualQuantizer (beam 5)", fit_seconds, relative_error(vectors, rq.decode(packed)),
                 n / encode_seconds))

    def faiss_greedy() -> np.ndarray:
        residual = vectors.copy()
        for codebook in kmeans.codebooks:
            index = faiss.IndexFlatL2(dim)
            index.add(codebook)
            _, nearest = index.search(residual, 1)
            residual -= codebook[nearest[:, 0]]
        return residual

    _, encode_seconds = timed(faiss_greedy, f"{name} faiss greedy encode")
    rows.append((name, "bare faiss greedy encode (same codebooks)", float("nan"), float("nan"), n / encode_seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic vectors (64-d)")
    parser.add_argument("--rqvae-epochs", type=int, default=10, help="RQ-VAE training epochs")
    parser.add_argument("--skip-beauty", action="store_true", help="only the synthetic set")
    parser.add_argument("--warehouse", default=str(ROOT / "warehouse"), help="folder holding sid.db")
    parser.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: library's)")
    args = parser.parse_args()

    import faiss
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)

    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"faiss {faiss.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = bench_dataset(f"synthetic {args.rows}x64", synthetic(args.rows), rqvae_epochs=args.rqvae_epochs)
    if not args.skip_beauty:
        beauty = beauty_embeddings(pathlib.Path(args.warehouse))
        if beauty is None:
            print(f"no item_embeddings table under {args.warehouse}; run a Beauty build first")
        else:
            rows += bench_dataset(f"Beauty {beauty.shape[0]}x{beauty.shape[1]}", beauty,
                                  rqvae_epochs=args.rqvae_epochs * 5)

    print("| dataset | method (3 x 256 codes, 24 bits) | fit s | relative error | encode rows/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for dataset, method, fit_seconds, error, throughput in rows:
        fit = "" if np.isnan(fit_seconds) else f"{fit_seconds:.1f}"
        err = "" if np.isnan(error) else f"{error:.4f}"
        print(f"| {dataset} | {method} | {fit} | {err} | {throughput:,.0f} |")


if __name__ == "__main__":
    main()
