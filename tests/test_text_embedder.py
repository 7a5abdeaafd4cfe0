"""The default text embedder: all-MiniLM-L6-v2 on onnxruntime, the same vectors as
sentence-transformers, and no torch in a default shard job."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from shardlens.models.text_embedder import make_text_embedder
from shardlens.options import EmbedOptions

ONNX = EmbedOptions.from_values({"backend": "onnx"})
TORCH = EmbedOptions.from_values({"backend": "sentence-transformers"})

TEXTS = [
    "person", "dining table", "OPEN 24 HOURS", "Bahnhofstraße 12 – Eingang", "猫", "Société Générale",
    "a photo of a dog sitting next to a red bicycle on a porch", "x" * 2000, "", "EXIT",
]  # fmt: skip


def test_onnx_vectors_equal_sentence_transformers():
    onnx = make_text_embedder(ONNX, threads=2).encode(TEXTS)
    torch_vectors = make_text_embedder(TORCH, threads=2).encode(TEXTS)
    assert onnx.shape == torch_vectors.shape == (len(TEXTS), 384) and onnx.dtype == np.float32
    cosine = (onnx * torch_vectors).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    # batching is for speed only: a text gives the same bytes alone and in any batch or order
    alone = np.stack([make_text_embedder(ONNX, threads=2).encode([text])[0] for text in TEXTS])
    again = make_text_embedder(ONNX, threads=2).encode(TEXTS[::-1] * 2)[: len(TEXTS)][::-1]
    assert alone.tobytes() == onnx.tobytes() == again.tobytes()


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown embed.backend 'bert'; available: onnx, sentence-transformers"):
        make_text_embedder(dataclasses.replace(ONNX, backend="bert"), threads=1)  # past the schema's check


NO_TORCH = r"""
import json, sys
from pathlib import Path
from shardlens.config import load_config
from shardlens.images.decoding import Limits
from shardlens.stages import ingest, gate, ocr, detect, regions, embed
from shardlens.stages.params import stage_options, stage_params

work, images = Path(sys.argv[1]), Path(sys.argv[2])
config = load_config(images=str(images))
limits = Limits(**config["limits"])
listing = work / "listing.tsv"
listing.write_text("path\tsize\tmtime_ns\n" + "".join(f"{p.name}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}\n" for p in sorted(images.iterdir())))
out = lambda stage: work / f"{stage}.jsonl"
ingest.run_shard(listing=listing, images_root=images, output=out("ingest"), shard="0000", limits=limits, allow_outside_root=False)
gate.run(ingest=out("ingest"), images_root=images, output=out("gate"), shard="0000", options=stage_options(config, "gate"), threads=1, limits=limits)
ocr.run(ingest=out("ingest"), gate=out("gate"), images_root=images, output=out("ocr"), shard="0000", options=stage_options(config, "ocr"), threads=1, limits=limits)
detect.run_shard(ingest=out("ingest"), images_root=images, output=out("detect"), shard="0000", options=stage_params(config, "detect")["options"], threads=1, limits=limits)
regions.run_shard(detect=out("detect"), output=out("regions"), shard="0000", options=stage_params(config, "regions")["options"], threads=1)
embed.run(regions=out("regions"), ocr=out("ocr"), output=out("embed"), shard="0000", options=stage_options(config, "embed"), threads=1)
records = [json.loads(line) for line in out("embed").read_text().splitlines()]
print(json.dumps({"embedded": len(records), "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "sentence_transformers"))}))
"""


def test_default_shard_stages_never_import_torch(tmp_path):
    from PIL import Image
    from skimage import data

    from conftest import text_image

    images = tmp_path / "images"
    images.mkdir()
    text_image(["OPEN 24 HOURS"]).save(images / "open.png")
    Image.fromarray(data.astronaut()).save(images / "astronaut.jpg")
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path), str(images)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert result["embedded"] >= 2  # the person caption and the OCR line at least
    assert result["heavy"] == []
