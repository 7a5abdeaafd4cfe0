"""One detector interface, several backends, chosen in config (``detect.backend``).

- ``nanodet``: NanoDet COCO-80 on onnxruntime, weights committed in the package (offline default)
- ``owlv2`` / ``owlvit`` / ``grounding-dino``: open-vocabulary detectors through ``transformers``
  (text prompts -> boxes), from a local directory or a hub id
and an optional crop classifier (``detect.classifier.backend``: ``siglip`` / ``clip``) that
scores each region against the prompts. The options are the detect stage's
(:func:`shardlens.ontology.detector_options`): the ``detect`` config, with ``prompts`` (the
ontology's, or ``detect.vocabulary``) for the backends that take text.

A detector returns, per RGB image, ``[{"bbox", "label", "score", "candidates"?}]`` best first,
boxes in the pixels of the image it was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..options import DetectOptions
from .detector_backends import CLASSIFIER_BACKENDS, DETECTOR_BACKENDS, OPEN_VOCABULARY
from .mirror import verify_mirror


def checked_model(model: str, allow_changed: bool = False, update_lock: bool = True) -> str:
    """A model inside a mirror (its folder's parent holds mirror.lock.json) is rehashed against
    the lock first: a changed weight file stops the run unless ``allow_changed`` (then the job
    that loads it updates the lock; planning checks with ``update_lock=False`` and writes nothing)."""
    folder = Path(model)
    if folder.is_dir() and (folder.parent / "mirror.lock.json").exists():
        verify_mirror(folder.parent, folder.name, allow_changed=allow_changed, update_lock=update_lock)
    return model


class Detector(Protocol):
    name: str
    weight_files: list[Path]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[dict]]: ...


def make_detector(options: DetectOptions, threads: int) -> Detector:
    """The detector ``options.backend`` names."""
    backend = options.backend
    if backend == "nanodet":
        from .nanodet import NanoDetDetector

        return NanoDetDetector(options, threads)
    if backend in OPEN_VOCABULARY:
        from .open_vocab_detector import HFOpenVocabDetector

        if not options.model:
            raise ValueError(f"detect.backend {backend!r} needs detect.model (a local directory or a hub id)")
        if not options.prompts:
            raise ValueError(f"detect.backend {backend!r} is open-vocabulary: give it prompts (an ontology file's classes, or detect.vocabulary)")
        return HFOpenVocabDetector(
            backend=backend,
            model=checked_model(options.model, options.allow_changed_weights),
            prompts=list(options.prompts),
            score_threshold=options.score_threshold,
            max_proposals=options.max_detections,
            batch_size=options.batch_size,
            threads=threads,
        )
    raise ValueError(f"unknown detect.backend {backend!r}; available: {', '.join(DETECTOR_BACKENDS)}")


def make_classifier(options: DetectOptions, threads: int):
    """The crop classifier configured under detect.classifier, choosing among the prompts, or None."""
    classifier = options.classifier
    backend = classifier.backend
    if not backend:
        return None
    if backend not in CLASSIFIER_BACKENDS:
        raise ValueError(f"unknown detect.classifier.backend {backend!r}; available: {', '.join(CLASSIFIER_BACKENDS)}")
    if not classifier.model:
        raise ValueError(f"detect.classifier.backend {backend!r} needs detect.classifier.model")
    labels = list(options.prompts or [])
    if not labels:
        raise ValueError("a crop classifier needs prompts (the labels it chooses among): an ontology file's classes, or detect.vocabulary")
    from .crop_classifier import CROP_BATCH_SIZE, HFCropClassifier

    return HFCropClassifier(
        backend=backend,
        # detect.allow_changed_weights is not applied to the classifier (detector_weight_files does apply it)
        model=checked_model(classifier.model, False),
        labels=labels,
        prompt_template=classifier.prompt_template,
        batch_size=CROP_BATCH_SIZE,
        threads=threads,
    )


def detector_weight_files(options: dict) -> dict[str, Path]:
    """Weight files of the configured detector (and classifier), without loading them."""
    backend = options["backend"]
    files: dict[str, Path] = {}
    if backend == "nanodet":
        from .nanodet import DEFAULT_MODEL_PATH

        path = Path(options["model"]) if options.get("model") else DEFAULT_MODEL_PATH
        files[path.name] = path
    elif backend in OPEN_VOCABULARY:
        from .hub_resolution import weight_files_for

        model = checked_model(options["model"], options.get("allow_changed_weights", False), update_lock=False)
        for path in weight_files_for(model):
            files[f"detector/{path.name}"] = path
    else:
        raise ValueError(f"unknown detect.backend {backend!r}; available: {', '.join(DETECTOR_BACKENDS)}")
    classifier = options.get("classifier") or {}
    if classifier.get("backend"):
        from .hub_resolution import weight_files_for

        model = checked_model(classifier["model"], options.get("allow_changed_weights", False), update_lock=False)
        for path in weight_files_for(model):
            files[f"classifier/{path.name}"] = path
    return files
