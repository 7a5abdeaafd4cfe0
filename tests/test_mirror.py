"""Local mirror of hub model weights: copy, lock with sha256, verify, accept changes on request."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shardlens.models.mirror import LOCK_NAME, MirrorError, file_sha256, mirror_model, verify_mirror

import tiny_hf_models


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return tiny_hf_models.build("clip", tmp_path_factory.mktemp("src") / "tiny-clip")


def test_mirror_local_model_and_verify(tiny_clip, tmp_path):
    root = tmp_path / "mirror"
    entry = mirror_model(tiny_clip, root)
    dest = root / "tiny-clip"
    assert entry["path"] == str(dest) and entry["source"] == str(tiny_clip.resolve()) and entry["revision"] is None
    names = sorted(p.name for p in tiny_clip.iterdir())
    assert sorted(p.name for p in dest.iterdir()) == sorted(entry["files"]) == names
    for name, meta in entry["files"].items():
        assert meta == {"sha256": file_sha256(tiny_clip / name), "size": (tiny_clip / name).stat().st_size}
    lock_text = (root / LOCK_NAME).read_text()
    lock = json.loads(lock_text)
    assert lock == {"version": 1, "models": {"tiny-clip": {k: v for k, v in entry.items() if k != "path"}}}
    assert lock_text == json.dumps(lock, sort_keys=True, indent=2) + "\n"
    assert verify_mirror(root, "tiny-clip") == dest
    # Mirroring again gives the same bytes; a second model is added beside the first.
    mirror_model(tiny_clip, root)
    assert (root / LOCK_NAME).read_text() == lock_text
    mirror_model(tiny_clip, root, name="clip-copy")
    assert sorted(json.loads((root / LOCK_NAME).read_text())["models"]) == ["clip-copy", "tiny-clip"]
    assert not [p for p in root.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_changed_missing_and_extra_files_are_named(tiny_clip, tmp_path):
    root = tmp_path / "mirror"
    mirror_model(tiny_clip, root, name="m")
    dest = root / "m"
    weights = dest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, written right after hashing: must not hide behind a stat cache
    weights.write_bytes(bytes(data))
    with pytest.raises(MirrorError, match=r"changed: model\.safetensors") as info:
        verify_mirror(root, "m")
    assert "'m'" in str(info.value)
    (dest / "config.json").unlink()
    (dest / "notes.txt").write_text("not part of the model\n")
    with pytest.raises(MirrorError) as info:
        verify_mirror(root, "m")
    message = str(info.value)
    for part in ("changed: model.safetensors", "missing: config.json", "extra: notes.txt"):
        assert part in message


def test_allow_changed_updates_the_lock(tiny_clip, tmp_path, caplog):
    root = tmp_path / "mirror"
    mirror_model(tiny_clip, root, name="m")
    weights = root / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with caplog.at_level(logging.WARNING, logger="shardlens.models.mirror"):
        assert verify_mirror(root, "m", allow_changed=True) == root / "m"
    assert "model.safetensors" in caplog.text
    lock = json.loads((root / LOCK_NAME).read_text())
    assert lock["models"]["m"]["files"]["model.safetensors"]["sha256"] == file_sha256(weights)
    assert lock["models"]["m"]["source"] == str(tiny_clip.resolve())
    assert verify_mirror(root, "m") == root / "m"


def test_verify_unknown_or_deleted_mirror(tiny_clip, tmp_path):
    root = tmp_path / "mirror"
    with pytest.raises(MirrorError, match="not in"):
        verify_mirror(root, "nothing")
    mirror_model(tiny_clip, root, name="m")
    import shutil

    shutil.rmtree(root / "m")
    with pytest.raises(MirrorError, match="missing"):
        verify_mirror(root, "m")
    with pytest.raises(MirrorError, match="plain folder name"):
        verify_mirror(root, "../m")


def test_mirror_hub_id_from_local_cache(tiny_clip, tmp_path):
    hub = tmp_path / "hub"
    snapshot = tiny_hf_models.fake_hub_cache(hub, "tiny-org/tiny-clip", tiny_clip)
    root = tmp_path / "mirror"
    entry = mirror_model("tiny-org/tiny-clip", root, cache_dir=hub, local_files_only=True)
    dest = root / "tiny-org--tiny-clip"
    assert entry["source"] == "tiny-org/tiny-clip" and entry["revision"] == snapshot.name
    assert all(p.is_file() and not p.is_symlink() for p in dest.iterdir())
    assert verify_mirror(root, "tiny-org--tiny-clip") == dest
    with pytest.raises(MirrorError, match="not in the local Hugging Face cache"):
        mirror_model("tiny-org/absent", root, cache_dir=hub, local_files_only=True)
    with pytest.raises(MirrorError, match="not a directory"):
        mirror_model(str(tmp_path / "no" / "such" / "dir"), root)


def test_mirrored_model_loads_with_the_same_version(tiny_clip, tmp_path):
    from shardlens.models.crop_classifier import HFCropClassifier

    root = tmp_path / "mirror"
    mirror_model(tiny_clip, root)
    original = HFCropClassifier("clip", str(tiny_clip), ["cat", "dog"], prompt_template="a photo of a {}", batch_size=16, threads=1)
    mirrored = HFCropClassifier("clip", str(verify_mirror(root, "tiny-clip")), ["cat", "dog"], prompt_template="a photo of a {}", batch_size=16, threads=1)
    assert mirrored.version == original.version


def test_cli_mirror_and_a_run_refusing_changed_weights(tmp_path):
    """The CLI pins a model; the detector loader then refuses it once a weight file changes."""
    from typer.testing import CliRunner

    from shardlens.cli import app
    from shardlens.models.detectors import detector_weight_files
    from shardlens.models.mirror import MirrorError

    from tiny_hf_models import build_owlv2

    source = build_owlv2(tmp_path / "owl")
    root = tmp_path / "mirror"
    result = CliRunner().invoke(app, ["mirror-models", str(source), "--root", str(root)])
    assert result.exit_code == 0, result.output
    mirrored = root / source.name
    options = {"backend": "owlv2", "model": str(mirrored), "vocabulary": ["cat"], "classifier": {}}
    assert detector_weight_files(options)  # verified and hashed
    weights = next(p for p in mirrored.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(MirrorError, match=weights.name):
        detector_weight_files(options)
    result = CliRunner().invoke(app, ["verify-mirror", source.name, "--root", str(root)])
    assert result.exit_code == 2 and weights.name in result.output
    lock = (root / "mirror.lock.json").read_bytes()
    assert detector_weight_files({**options, "allow_changed_weights": True})
    assert (root / "mirror.lock.json").read_bytes() == lock  # planning (params, -n) writes no lock
