"""The open-vocabulary stack end to end in the workflow, with tiny randomly initialised models the
tests build (tests/tiny_hf_models.py): a detector (OWLv2 or Grounding DINO) or the bundled NanoDet,
followed by a crop classifier (SigLIP or CLIP) that scores every region against the vocabulary (the
prompts), and what an ontology file with the same prompts re-runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from conftest import planned_jobs, snakemake, text_image, write_config

pytestmark = pytest.mark.slow

AGGREGATE = {"cluster": 1, "manifest": 1, "catalog": 1, "export": 1, "ingest_report": 1, "report_figures": 1, "all": 1}
VOCABULARY = ["cat", "sign", "cup"]


@pytest.fixture(scope="module")
def three_images(tmp_path_factory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("ov") / "images"
    root.mkdir()
    Image.fromarray(data.chelsea()).save(root / "cat.jpg", quality=90)
    Image.fromarray(data.coffee()).save(root / "coffee.jpg", quality=90)
    text_image(["OPEN 24 HOURS"]).save(root / "open.png")
    return root


def run_stack(tmp_path: Path, images: Path, detector: str, classifier: str) -> tuple[Path, dict]:
    from tiny_hf_models import build

    detect = {
        "backend": detector, "vocabulary": VOCABULARY, "max_detections": 2, "top_k": 3,
        "score_threshold": 0.35 if detector == "nanodet" else 0.0,
        "classifier": {"backend": classifier, "model": str(build(classifier, tmp_path / f"tiny-{classifier}"))},
    }  # fmt: skip
    if detector != "nanodet":
        detect["model"] = str(build(detector, tmp_path / f"tiny-{detector}"))
    workdir = tmp_path / "run"
    write_config(workdir, images=str(images), shards={"count": 1}, detect=detect)
    snakemake(workdir, "--cores", "2")
    return workdir, detect


def check_regions(workdir: Path, detector: str, classifier: str) -> None:
    db = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    (version,) = {v for (v,) in db.execute("SELECT DISTINCT detector_version FROM regions")}
    assert version.startswith(f"{detector}:") and f"+{classifier}:" in version  # names both models
    per_image = [n for (n,) in db.execute("SELECT COUNT(*) FROM regions GROUP BY image_id")]
    assert per_image and max(per_image) <= 2  # detect.max_detections bounds the proposals
    candidates: dict[tuple[str, int], list[tuple[str, float, str]]] = {}
    for image_id, region_id, label, score, source in db.execute(
        "SELECT image_id, region_id, label, score, source FROM region_labels ORDER BY image_id, region_id, rank"
    ):
        candidates.setdefault((image_id, region_id), []).append((label, score, source))
    sources = set()
    for ranked in candidates.values():
        labels = [label for label, _, _ in ranked]
        scores = [score for _, score, _ in ranked]
        assert len(set(labels)) == len(labels) and scores == sorted(scores, reverse=True)  # merged, best first
        sources |= {source for _, _, source in ranked}
        assert {label for label, _, source in ranked if source == "classifier"} <= set(VOCABULARY)
    assert sources == {"detector", "classifier"}  # both models' candidates reach the catalog
    machine = {(i, r): m for i, r, m in db.execute("SELECT image_id, region_id, machine_label FROM final_annotations WHERE item = 'region'")}
    assert machine and all(machine[key] == candidates[key][0][0] for key in machine)  # its own top candidate
    files = json.loads((workdir / "cache" / "manifest.json").read_text())["models"]["detector"]["files"]
    assert any(name.startswith("classifier/") for name in files)  # both models' files are hashed
    assert any(name.startswith("detector/") or name.endswith(".onnx") for name in files)


@pytest.mark.parametrize("detector,classifier", [("owlv2", "siglip"), ("grounding-dino", "clip")])
def test_open_vocabulary_detector_with_crop_classifier(tmp_path, three_images, detector, classifier):
    workdir, detect = run_stack(tmp_path, three_images, detector, classifier)
    check_regions(workdir, detector, classifier)
    check_ontology_reruns(workdir, three_images, detect)
    # a new prompt template re-runs detect and its dependants only
    detect["classifier"]["prompt_template"] = "a picture of a {}"
    write_config(workdir, images=str(three_images), shards={"count": 1}, detect=detect)
    assert planned_jobs(workdir) == {"detect": 1, "regions": 1, "embed": 1, "shard_jobs": 1, **AGGREGATE}


def check_ontology_reruns(workdir: Path, images: Path, detect: dict) -> None:
    """The vocabulary turned into an ontology file with the same prompts: classes renamed and
    merged, a threshold, re-run no detector (the detect job's prompts are the same); a new prompt
    does (the open-vocabulary detector and the classifier are asked for it: inherent)."""
    import yaml

    (workdir / "config" / "ontology.yaml").write_text(
        yaml.safe_dump({"classes": {"animal": {"prompts": ["cat"], "threshold": 0.1}, "sign": None, "tableware": {"prompts": ["cup"]}}})
    )
    detect = {**detect, "vocabulary": []}
    write_config(workdir, images=str(images), shards={"count": 1}, detect=detect, ontology="config/ontology.yaml")
    assert planned_jobs(workdir) == {"regions": 1, "embed": 1, "shard_jobs": 1, **AGGREGATE}
    (workdir / "config" / "ontology.yaml").write_text(
        yaml.safe_dump({"classes": {"animal": {"prompts": ["cat", "dog"]}, "sign": None, "tableware": {"prompts": ["cup"]}}})
    )
    assert planned_jobs(workdir) == {"detect": 1, "regions": 1, "embed": 1, "shard_jobs": 1, **AGGREGATE}


def test_nanodet_with_a_crop_classifier_and_changed_classifier_weights(tmp_path, three_images):
    """Offline users: NanoDet's boxes re-ranked by the classifier against the vocabulary; new
    classifier weights re-run detect and its dependants only."""
    from safetensors.numpy import load_file, save_file

    workdir, detect = run_stack(tmp_path, three_images, "nanodet", "siglip")
    check_regions(workdir, "nanodet", "siglip")
    weights = Path(detect["classifier"]["model"]) / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, weights, metadata={"format": "pt"})
    assert planned_jobs(workdir) == {"detect": 1, "regions": 1, "embed": 1, "shard_jobs": 1, **AGGREGATE}
