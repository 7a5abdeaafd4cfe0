"""`shardlens mirror-models --from-config`: mirror exactly the hub models a workflow config names.

Hub ids resolve from a fake Hugging Face cache (``tiny_hf_models.fake_hub_cache``) with the hub
set offline, so nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shardlens.cli import app
from shardlens.config import load_config
from shardlens.models.mirror import LOCK_NAME, MirrorError, config_models, verify_mirror

import tiny_hf_models

OWL_ID = "tiny-org/tiny-owlv2"
SIGLIP_ID = "tiny-org/tiny-siglip"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    return {backend: tiny_hf_models.build(backend, src / f"tiny-{backend}") for backend in ("owlv2", "siglip")}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch, tiny_models) -> Path:
    """A fake HF cache holding the two tiny models under hub ids; the hub is offline."""
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    tiny_hf_models.fake_hub_cache(hub, OWL_ID, tiny_models["owlv2"])
    tiny_hf_models.fake_hub_cache(hub, SIGLIP_ID, tiny_models["siglip"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub


def write_config(folder: Path, detect: dict, name: str = "config.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"images": "images", "detect": detect}, sort_keys=False))
    return path


OWL_SIGLIP = {
    "backend": "owlv2",
    "model": OWL_ID,
    "vocabulary": ["cat", "dog"],
    "classifier": {"backend": "siglip", "model": SIGLIP_ID},
}


def invoke(*args: str):
    return CliRunner().invoke(app, ["mirror-models", *args])


def test_config_naming_owlv2_and_siglip_mirrors_both(offline_hub, tmp_path):
    config = write_config(tmp_path, OWL_SIGLIP)
    root = tmp_path / "mirror"
    result = invoke("--from-config", str(config), "--root", str(root))
    assert result.exit_code == 0, result.output
    lock = json.loads((root / LOCK_NAME).read_text())
    names = {"tiny-org--tiny-owlv2": OWL_ID, "tiny-org--tiny-siglip": SIGLIP_ID}
    assert {name: entry["source"] for name, entry in lock["models"].items()} == names
    for name in names:
        assert verify_mirror(root, name) == root / name
    assert f"set detect.model: {root / 'tiny-org--tiny-owlv2'}" in result.output
    assert f"set detect.classifier.model: {root / 'tiny-org--tiny-siglip'}" in result.output


def test_default_config_is_config_yaml_in_the_current_folder(offline_hub, tmp_path, monkeypatch):
    write_config(tmp_path, {"backend": "nanodet", "classifier": {"backend": "siglip", "model": SIGLIP_ID}}, "config/config.yaml")
    monkeypatch.chdir(tmp_path)
    result = invoke("--from-config")
    assert result.exit_code == 0, result.output
    lock = json.loads((tmp_path / "models" / "mirror" / LOCK_NAME).read_text())
    assert sorted(lock["models"]) == ["tiny-org--tiny-siglip"]  # nanodet's model is not a hub model


def test_local_folders_are_used_as_they_are(offline_hub, tmp_path, tiny_models):
    config = write_config(tmp_path, {**OWL_SIGLIP, "model": str(tiny_models["owlv2"])})
    root = tmp_path / "mirror"
    result = invoke("--from-config", str(config), "--root", str(root))
    assert result.exit_code == 0, result.output
    assert f"detect.model: {tiny_models['owlv2']} is a local folder: used as it is" in result.output
    assert sorted(json.loads((root / LOCK_NAME).read_text())["models"]) == ["tiny-org--tiny-siglip"]
    # Nothing left to mirror when every model is local.
    config = write_config(
        tmp_path, {**OWL_SIGLIP, "model": str(tiny_models["owlv2"]), "classifier": {"backend": "siglip", "model": str(tiny_models["siglip"])}}
    )
    result = invoke("--from-config", str(config), "--root", str(tmp_path / "other"))
    assert result.exit_code == 0, result.output
    assert "names no hub model" in result.output and "nothing to mirror" in result.output
    assert not (tmp_path / "other").exists()


def test_nanodet_only_config_has_nothing_to_mirror(tmp_path):
    config = write_config(tmp_path, {"backend": "nanodet", "vocabulary": ["car"]})
    root = tmp_path / "mirror"
    result = invoke("--from-config", str(config), "--root", str(root))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"{config} names no hub model (detect.backend is not an open-vocabulary backend and detect.classifier.backend is not set): nothing to mirror"
    )
    assert not root.exists()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "not found"),
        ("schema", "detect.backend: 'yolo' is not one of"),
        ("yaml", "YAML syntax"),
        ("list", "a workflow config is a mapping"),
        ("no-model", "detect.backend is 'owlv2' but detect.model is not set"),
        ("no-classifier-model", "detect.classifier.backend is 'clip' but detect.classifier.model is not set"),
    ],
)
def test_bad_config_is_a_one_line_error(tmp_path, case, expected):
    path = tmp_path / "config.yaml"
    if case == "schema":
        write_config(tmp_path, {"backend": "yolo"})
    elif case == "yaml":
        path.write_text("detect: [owlv2\n")
    elif case == "list":
        path.write_text("- images\n")
    elif case == "no-model":
        write_config(tmp_path, {"backend": "owlv2", "vocabulary": ["cat"]})
    elif case == "no-classifier-model":
        write_config(tmp_path, {"classifier": {"backend": "clip"}})
    result = invoke("--from-config", str(path), "--root", str(tmp_path / "mirror"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert str(path) in lines[0]
    assert not (tmp_path / "mirror").exists()


def test_hub_model_missing_from_the_offline_cache_is_a_one_line_error(offline_hub, tmp_path):
    config = write_config(tmp_path, {**OWL_SIGLIP, "model": "tiny-org/absent"})
    result = invoke("--from-config", str(config), "--root", str(tmp_path / "mirror"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tiny-org/absent:"), result.output


def test_no_sources_and_no_config_is_an_error():
    result = invoke()
    assert result.exit_code == 2
    assert result.output.strip() == "error: name hub ids or local model folders, or use --from-config [CONFIG]"


def test_config_models_lists_what_a_run_loads():
    assert config_models(load_config(None)) == []
    named = config_models(load_config(None, detect=OWL_SIGLIP))
    assert named == [("detect.model", OWL_ID), ("detect.classifier.model", SIGLIP_ID)]
    gdino = {"backend": "grounding-dino", "model": "IDEA-Research/grounding-dino-tiny", "vocabulary": ["cat"]}
    assert config_models(load_config(None, detect=gdino)) == [("detect.model", "IDEA-Research/grounding-dino-tiny")]
    with pytest.raises(MirrorError, match="detect.model is not set"):
        config_models(load_config(None, detect={"backend": "owlvit", "vocabulary": ["cat"]}))
