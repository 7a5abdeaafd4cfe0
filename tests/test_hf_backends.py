"""Hub-backed transformers backends, on tiny random models built offline and loaded like real ones.

The models are built by ``tiny_hf_models`` from small configs, saved with ``save_pretrained``
and loaded back through ``HFOpenVocabDetector`` / ``HFCropClassifier`` (``from_pretrained`` on the
folder, or on a hub id resolved from a fake local HF cache). Their outputs are meaningless;
what is checked is the real pre/post-processing: shapes, original-pixel boxes, labels, ordering,
batching, hashing and errors.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from shardlens.models.crop_classifier import HFCropClassifier
from shardlens.models.hub_resolution import ModelLoadError, model_version, weight_files_for
from shardlens.models.open_vocab_detector import HFOpenVocabDetector

import tiny_hf_models

DETECTORS = ["owlv2", "owlvit", "grounding-dino"]
CLASSIFIERS = ["siglip", "clip"]
# Mixed case on purpose: Grounding DINO lower-cases its text, labels must still come back verbatim.
PROMPTS = ["Cat", "a person", "rocket"]
LABELS = ["cat", "dog", "rocket", "person"]

# The engines take every value of the config (make_detector / make_classifier pass them); these
# are the values the tests below build them with where a test does not set its own.
DETECTOR = {"score_threshold": 0.1, "max_proposals": 100, "batch_size": 4, "threads": 1}
CLASSIFIER = {"prompt_template": "a photo of a {}", "batch_size": 16, "threads": 1}


def build_detector(backend: str, model: str, prompts: list[str], **given) -> HFOpenVocabDetector:
    return HFOpenVocabDetector(backend, model, prompts, **(DETECTOR | given))


def build_classifier(backend: str, model: str, labels: list[str], **given) -> HFCropClassifier:
    return HFCropClassifier(backend, model, labels, **(CLASSIFIER | given))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Every tiny model, built once for this module: backend -> folder."""
    root = tmp_path_factory.mktemp("hf_models")
    return {backend: tiny_hf_models.build(backend, root / backend) for backend in DETECTORS + CLASSIFIERS}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Real photos of different sizes and aspect ratios; two share a size (Grounding DINO batches those)."""
    from skimage import data

    chelsea = data.chelsea()  # 300 x 451
    return [data.astronaut(), chelsea, data.rocket(), np.ascontiguousarray(chelsea[::-1])]


def expected_digest(files: list[Path]) -> str:
    lines = "".join(f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in sorted(files, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def check_detections(detections: list[dict], image: np.ndarray, prompts: list[str], max_proposals: int, threshold: float) -> None:
    height, width = image.shape[:2]
    assert 0 < len(detections) <= max_proposals
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True)
    for det in detections:
        assert set(det) == {"bbox", "label", "score"}
        assert det["label"] in prompts
        assert isinstance(det["score"], float) and threshold < det["score"] <= 1.0
        x0, y0, x1, y1 = det["bbox"]
        assert all(isinstance(v, float) and math.isfinite(v) for v in det["bbox"])
        assert 0.0 <= x0 <= x1 <= width and 0.0 <= y0 <= y1 <= height


# --------------------------------------------------------------------------- detectors


@pytest.mark.parametrize("backend", DETECTORS)
def test_detector_outputs_boxes_in_original_pixels(backend, tiny_models, images):
    detector = build_detector(backend, str(tiny_models[backend]), PROMPTS, score_threshold=0.01, max_proposals=7, batch_size=2)
    assert detector.name == backend and detector.model_id == str(tiny_models[backend])
    results = detector.detect_batch(images)
    assert len(results) == len(images)
    for detections, image in zip(results, images):
        check_detections(detections, image, PROMPTS, max_proposals=7, threshold=0.01)
    # The network sees 64-128 px inputs: boxes beyond that prove they were mapped back to the originals.
    assert max(d["bbox"][2] for dets in results for d in dets) > 150
    assert max(d["bbox"][3] for dets in results for d in dets) > 150
    assert detector.detect_batch([]) == []


@pytest.mark.parametrize("backend", DETECTORS)
def test_detector_batching_matches_one_by_one(backend, tiny_models, images):
    model = str(tiny_models[backend])
    batched = build_detector(backend, model, PROMPTS, score_threshold=0.01, max_proposals=10, batch_size=4)
    single = build_detector(backend, model, PROMPTS, score_threshold=0.01, max_proposals=10, batch_size=1)
    together = batched.detect_batch(images)
    alone = [single.detect_batch([image])[0] for image in images]
    for got, want in zip(together, alone):
        assert [d["label"] for d in got] == [d["label"] for d in want]
        np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in want], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose([d["bbox"] for d in got], [d["bbox"] for d in want], rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("backend", DETECTORS)
def test_detector_threshold_and_max_proposals(backend, tiny_models, images):
    loose = build_detector(backend, str(tiny_models[backend]), PROMPTS, score_threshold=0.0, max_proposals=3)
    results = loose.detect_batch(images[:2])
    assert all(len(dets) == 3 for dets in results)
    cut = sorted(d["score"] for dets in results for d in dets)[2]
    strict = build_detector(backend, str(tiny_models[backend]), PROMPTS, score_threshold=cut, max_proposals=3)
    assert all(d["score"] > cut for dets in strict.detect_batch(images[:2]) for d in dets)


def test_detector_accepts_grey_and_rgba(tiny_models, images):
    detector = build_detector("owlv2", str(tiny_models["owlv2"]), PROMPTS, score_threshold=0.0, max_proposals=5)
    grey = images[1][:, :, 0]
    rgba = np.dstack([images[1], np.full(images[1].shape[:2], 255, np.uint8)])
    plain = detector.detect_batch([images[1]])[0]
    for variant in (grey, rgba):
        check_detections(detector.detect_batch([variant])[0], images[1], PROMPTS, 5, 0.0)
    assert detector.detect_batch([rgba])[0] == plain
    with pytest.raises(ValueError, match="uint8"):
        detector.detect_batch([images[1].astype(np.float32)])


def test_grounding_dino_prompt_rules(tiny_models):
    model = str(tiny_models["grounding-dino"])
    with pytest.raises(ValueError, match="cannot contain '.'"):
        build_detector("grounding-dino", model, ["a cat. a dog"])
    with pytest.raises(ValueError, match="duplicate"):
        build_detector("grounding-dino", model, ["cat", "cat"])
    detector = build_detector("grounding-dino", model, PROMPTS)
    assert detector._dino_text == "cat. a person. rocket."


def test_grounding_dino_labels_follow_the_best_prompt_tokens(tiny_models):
    """Token logits -> prompt: the prompt owning the highest-scoring token, '.'/special tokens ignored."""
    import torch

    detector = build_detector("grounding-dino", str(tiny_models["grounding-dino"]), PROMPTS, score_threshold=0.5)
    tokens = detector.processor.tokenizer.convert_ids_to_tokens(detector.processor.tokenizer(detector._dino_text)["input_ids"])
    owner = detector._token_prompt.tolist()
    assert tokens[0] == "[CLS]" and owner[0] == -1 and owner[-1] == -1  # [CLS] ... [SEP]
    assert [owner[i] for i, t in enumerate(tokens) if t == "."] == [-1, -1, -1]
    assert sorted({o for o in owner if o >= 0}) == [0, 1, 2]
    logits = torch.full((1, 4, 32), -10.0)
    person = [i for i, o in enumerate(owner) if o == 1]
    logits[0, 0, person[-1]] = 3.0  # "person" token of "a person"
    logits[0, 1, owner.index(2)] = 2.0  # "rocket"
    logits[0, 2, owner.index(0)] = 1.0  # "cat"
    logits[0, 3, tokens.index(".")] = 4.0  # a separator alone: scored, but no prompt better than another
    logits[0, 3, owner.index(2)] = 0.5
    assert detector._dino_labels(logits) == [["a person", "rocket", "Cat", "rocket"]]
    logits[0, 1:, :] = -10.0  # below the threshold: dropped, like the processor drops them
    assert detector._dino_labels(logits) == [["a person"]]


# --------------------------------------------------------------------------- classifiers


@pytest.mark.parametrize("backend", CLASSIFIERS)
def test_classifier_top_k_per_box(backend, tiny_models, images):
    classifier = build_classifier(backend, str(tiny_models[backend]), LABELS, batch_size=2)
    image = images[0]
    boxes = [
        [0, 0, 100, 100],
        [50.5, 20.2, 300.7, 280.1],
        [-10, -10, 40, 30],  # partly outside: clamped to [0, 0, 40, 30]
        [10, 10, 10, 50],  # zero width
        [600, 600, 700, 700],  # outside the 512 x 512 image
        [30, 40, 20, 60],  # inverted
        [float("nan"), 0, 10, 10],
        [0, 0, 512, 512],
    ]
    results = classifier.classify(image, boxes, top_k=3)
    assert len(results) == len(boxes)
    assert results[3] == results[4] == results[5] == results[6] == []
    for index in (0, 1, 2, 7):
        top = results[index]
        assert len(top) == 3
        assert len({label for label, _ in top}) == 3 and all(label in LABELS for label, _ in top)
        scores = [score for _, score in top]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    clamped = classifier.classify(image, [[0, 0, 40, 30]], top_k=3)[0]
    assert [label for label, _ in clamped] == [label for label, _ in results[2]]
    np.testing.assert_allclose([s for _, s in clamped], [s for _, s in results[2]], rtol=1e-5)
    full = classifier.classify(image, [[0, 0, 100, 100]], top_k=10)[0]
    assert len(full) == len(LABELS)  # top_k is capped at the vocabulary
    if backend == "clip":
        assert sum(score for _, score in full) == pytest.approx(1.0, abs=1e-5)  # softmax over the labels
    assert classifier.classify(image, [], top_k=3) == []


@pytest.mark.parametrize("backend", CLASSIFIERS)
def test_classifier_batching_and_text_embedded_once(backend, tiny_models, images, monkeypatch):
    model = str(tiny_models[backend])
    big = build_classifier(backend, model, LABELS, batch_size=16)
    small = build_classifier(backend, model, LABELS, batch_size=1)
    assert tuple(big.text_embeds.shape[:1]) == (len(LABELS),)

    def no_text(*args, **kwargs):
        raise AssertionError("label texts must be embedded once, at construction")

    monkeypatch.setattr(big.model, "get_text_features", no_text)
    boxes = [[0, 0, 60, 80], [100, 120, 300, 290], [200, 10, 451, 300], [5, 5, 6, 6]]
    got = big.classify(images[1], boxes, top_k=4)
    want = small.classify(images[1], boxes, top_k=4)
    for g, w in zip(got, want):
        assert [label for label, _ in g] == [label for label, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", CLASSIFIERS)
def test_crops_of_several_images_go_through_together(backend, tiny_models, images, monkeypatch):
    """classify_batch scores every image's crops in shared model batches, with the results of
    classify image by image."""
    classifier = build_classifier(backend, str(tiny_models[backend]), LABELS, batch_size=4)
    boxes = [[[0, 0, 60, 80], [100, 120, 300, 290], [5, 5, 6, 6]], [], [[200, 10, 451, 300], [10, 10, 10, 50]]]
    picked = [images[0], images[1], images[1]]
    alone = [classifier.classify(image, image_boxes, top_k=3) for image, image_boxes in zip(picked, boxes)]
    calls = []
    scores = classifier._scores
    monkeypatch.setattr(classifier, "_scores", lambda crops: calls.append(len(crops)) or scores(crops))
    together = classifier.classify_batch(picked, boxes, top_k=3)
    assert calls == [4]  # the four crops with an area (one of 1 pixel), in one model batch across the images
    assert [len(r) for r in together] == [3, 0, 2] and together[2][1] == []  # zero width: no crop
    for got, want in zip(together, alone):
        for g, w in zip(got, want):
            assert [label for label, _ in g] == [label for label, _ in w]
            np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="2 images but 1 box lists"):
        classifier.classify_batch(picked[:2], boxes[:1], top_k=3)


# --------------------------------------------------------------------------- files, versions, errors


@pytest.mark.parametrize("backend", ["owlv2", "grounding-dino", "clip"])
def test_version_and_weight_files_hash_the_saved_files(backend, tiny_models):
    folder = tiny_models[backend]
    if backend in CLASSIFIERS:
        loaded = build_classifier(backend, str(folder), LABELS)
    else:
        loaded = build_detector(backend, str(folder), PROMPTS)
    saved = sorted(p for p in folder.iterdir() if p.is_file())
    assert loaded.weight_files == saved
    assert {"config.json", "model.safetensors"} <= {p.name for p in saved}
    assert loaded.version == f"{backend}:{folder.name}@{expected_digest(saved)[:12]}"
    assert weight_files_for(str(folder)) == saved


def test_version_follows_the_weights(tiny_models, tmp_path):
    import shutil

    copy = tmp_path / "clip"
    shutil.copytree(tiny_models["clip"], copy)
    before = model_version("clip", str(copy), weight_files_for(copy))
    assert before == model_version("clip", str(tiny_models["clip"]), weight_files_for(tiny_models["clip"]))
    with open(copy / "config.json", "a") as handle:
        handle.write("\n")
    assert model_version("clip", str(copy), weight_files_for(copy)) != before


@pytest.mark.parametrize("backend", ["owlv2", "grounding-dino", "siglip"])
def test_missing_local_dir_is_a_clear_error(backend, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as info:
        if backend in CLASSIFIERS:
            build_classifier(backend, str(missing), LABELS)
        else:
            build_detector(backend, str(missing), PROMPTS)
    message = str(info.value)
    assert backend in message and str(missing) in message and "does not exist" in message


def test_wrong_or_empty_dir_and_unknown_backend(tiny_models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="owlvit.*empty"):
        build_detector("owlvit", str(tmp_path / "empty"), PROMPTS)
    with pytest.raises(ModelLoadError, match="'owlv2' model, but .* holds a 'clip' model"):
        build_detector("owlv2", str(tiny_models["clip"]), PROMPTS)
    with pytest.raises(ValueError, match="unknown detector backend 'yolo'"):
        build_detector("yolo", str(tiny_models["owlv2"]), PROMPTS)
    with pytest.raises(ValueError, match="unknown classifier backend"):
        build_classifier("blip", str(tiny_models["clip"]), LABELS)


def test_uncached_hub_id_says_offline(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        build_detector("owlv2", "shardlens-tests/not-a-cached-model", PROMPTS, local_files_only=True)
    message = str(info.value)
    assert "shardlens-tests/not-a-cached-model" in message and "owlv2" in message
    assert "offline" in message and "shardlens mirror-models" in message


def test_hub_id_resolved_from_the_local_cache_offline(tiny_models, tmp_path, monkeypatch):
    """A hub id loads from the HF cache with the hub offline, and its snapshot files are what gets hashed.

    ``HF_HUB_CACHE``/``HF_HUB_OFFLINE`` are read from ``huggingface_hub.constants`` at call time by
    both huggingface_hub and transformers, so patching them equals setting the environment
    variables before start-up (without a second, 10 s, torch import in a subprocess).
    """
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    snapshot = tiny_hf_models.fake_hub_cache(hub, "tiny-org/tiny-clip", tiny_models["clip"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    classifier = build_classifier("clip", "tiny-org/tiny-clip", ["cat", "dog"])
    assert classifier.weight_files == sorted(snapshot.iterdir())
    assert all(p.is_symlink() for p in classifier.weight_files)
    # Same files, same digest as the folder they came from: the version names weights, not paths.
    assert classifier.version == f"clip:tiny-clip@{expected_digest(sorted(tiny_models['clip'].iterdir()))[:12]}"
    assert weight_files_for("tiny-org/tiny-clip") == classifier.weight_files
    with pytest.raises(ModelLoadError) as info:
        build_classifier("siglip", "tiny-org/never-downloaded", ["cat"])
    message = str(info.value)
    assert "tiny-org/never-downloaded" in message and "siglip" in message
    assert "offline" in message and "mirror-models" in message
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        weight_files_for("tiny-org/never-downloaded")
