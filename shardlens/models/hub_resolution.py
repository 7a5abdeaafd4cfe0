"""Hub-backed models through ``transformers``: finding their files, naming their version and
loading them with clear errors.

``model`` is either a local directory (e.g. one written by ``shardlens mirror-models`` or
``save_pretrained``) or a Hugging Face hub id, resolved through the local HF cache first; only a
hub id missing from the cache is downloaded, and never with ``local_files_only=True`` (or
``HF_HUB_OFFLINE=1``). The backends that load through here
(:class:`~shardlens.models.open_vocab_detector.HFOpenVocabDetector`,
:class:`~shardlens.models.crop_classifier.HFCropClassifier`) expose ``weight_files`` (the files
loaded) and ``version`` (``backend:<model basename>@<sha12 over the weight files>``) so records
can name the exact weights that produced them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .weights import sha256_file

log = logging.getLogger(__name__)

# transformers classes of each hub backend: backend -> (model class, processor class, accepted
# config model_type). The list of detector backends is models/detector_backends.py's DETECTOR_BACKENDS.
HUB_DETECTOR_CLASSES: dict[str, tuple[str, str, str]] = {
    "owlv2": ("Owlv2ForObjectDetection", "Owlv2Processor", "owlv2"),
    "owlvit": ("OwlViTForObjectDetection", "OwlViTProcessor", "owlvit"),
    "grounding-dino": ("GroundingDinoForObjectDetection", "GroundingDinoProcessor", "grounding-dino"),
}
HUB_CLASSIFIER_CLASSES: dict[str, tuple[str, str, str]] = {
    "siglip": ("SiglipModel", "SiglipProcessor", "siglip"),
    "clip": ("CLIPModel", "CLIPProcessor", "clip"),
}
# Files in a model folder that are not read by ``from_pretrained`` and so do not name the weights.
_IGNORED_FILES = {"README.md", "LICENSE", "LICENSE.txt", "mirror.lock.json"}


class ModelLoadError(OSError):
    """A hub-backed model could not be loaded; the message names the model, the backend and what to do."""


# --------------------------------------------------------------------------- model files


def _looks_like_path(model: str) -> bool:
    """True when ``model`` is meant as a local path rather than a hub id (``org/name`` or ``name``)."""
    if os.path.isabs(model) or model.startswith((".", "~")) or "\\" in model:
        return True
    return model.count("/") > 1 or model.endswith("/")


def _is_local(model: str | os.PathLike[str]) -> bool:
    return Path(model).expanduser().exists() or _looks_like_path(str(model))


def _loadable_files(folder: Path) -> list[Path]:
    """Regular files at the top of a model folder (what ``from_pretrained`` reads), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in _IGNORED_FILES)


def weight_files_for(model: str | os.PathLike[str], local_files_only: bool = True) -> list[Path]:
    """The weight, config, tokenizer and processor files of ``model``, sorted by name.

    For a local directory: the regular files at its top level (hidden files and README/LICENSE
    left out). For a hub id: the files of its snapshot in the local HF cache, resolved with
    ``huggingface_hub.snapshot_download(local_files_only=True)``, so no network is used (the
    paths are the snapshot's symlinks; hashing follows them to the blobs). With
    ``local_files_only=False`` a hub id missing from the cache is downloaded first.
    """
    if _is_local(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"model directory {str(folder)!r} does not exist or is not a directory")
        files = _loadable_files(folder)
        if not files:
            raise ModelLoadError(f"model directory {str(folder)!r} holds no model files")
        return files
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(str(model), local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError and friends
        if local_files_only:
            raise ModelLoadError(
                f"hub model {str(model)!r} is not in the local Hugging Face cache ({_hf_cache()}): {err}. {_offline_hint(str(model))}"
            ) from err
        snapshot = Path(snapshot_download(str(model)))
    return _loadable_files(snapshot)


def files_digest(files: Sequence[Path]) -> str:
    """sha256 over ``name sha256`` lines of ``files`` (names, not folders: the digest survives a move)."""
    lines = "".join(f"{Path(f).name} {sha256_file(f)}\n" for f in sorted(files, key=lambda p: Path(p).name))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def model_version(backend: str, model: str | os.PathLike[str], files: Sequence[Path]) -> str:
    """``backend:<model basename>@<sha12 over the files>``."""
    base = Path(str(model).rstrip("/\\")).name or str(model)
    return f"{backend}:{base}@{files_digest(files)[:12]}"


def _hf_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub always ships constants
        return "the Hugging Face cache"


def _offline_hint(model: str) -> str:
    return (
        f"No local directory {model!r} exists (from {os.getcwd()}), so it was taken as a hub id. "
        "This machine may be offline (no access to huggingface.co): run `shardlens mirror-models` on a "
        "connected machine and point the config at the mirrored directory, or give a local directory "
        "written by save_pretrained."
    )


def _transformers_class(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


def load_model(kind: str, backend: str, table: dict[str, tuple[str, str, str]], model: str, local_files_only: bool) -> tuple[Any, Any, list[Path]]:
    """Load ``(model, processor, weight_files)`` for ``backend`` with clear errors.

    The config's ``model_type`` must be the backend's, and every weight of the model must come
    from the checkpoint: transformers would otherwise initialise the missing ones at random
    with only a log line, and annotate with noise.
    """
    if backend not in table:
        raise ValueError(f"unknown {kind} backend {backend!r}; known: {', '.join(sorted(table))}")
    model_cls_name, processor_cls_name, model_type = table[backend]
    model = str(model)
    local = _is_local(model)
    if local:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"{kind} backend {backend!r}: model directory {str(folder)!r} does not exist. "
                f"Give a folder written by save_pretrained or `shardlens mirror-models`, or a hub id."
            )
        source = str(folder)
        where = f"directory {source!r}"
    else:
        source = model
        where = f"hub model {model!r}"
    from transformers import AutoConfig

    offline = local_files_only or local

    def cache_first(load: Any, *args: Any, **kwargs: Any) -> Any:
        """``load`` from local files; a hub id missing from the cache is fetched only if allowed.

        Cache first because, offline, huggingface_hub retries each request with back-off (about
        20 s per file) before falling back to the cache, and a cached snapshot is the pinned one.
        """
        if offline:
            return load(*args, local_files_only=True, **kwargs)
        try:
            return load(*args, local_files_only=True, **kwargs)
        except OSError:
            return load(*args, local_files_only=False, **kwargs)

    try:
        config = cache_first(AutoConfig.from_pretrained, source)
    except (OSError, ValueError) as err:
        if local:
            raise ModelLoadError(f"{kind} backend {backend!r}: no usable config.json in {where}: {err}") from err
        raise ModelLoadError(
            f"{kind} backend {backend!r}: could not load {where} (local_files_only={local_files_only}, cache {_hf_cache()}): {err}. {_offline_hint(model)}"
        ) from err
    if config.model_type != model_type:
        raise ModelLoadError(
            f"{kind} backend {backend!r} needs a {model_type!r} model, but {where} holds a {config.model_type!r} model; pick the matching backend or model"
        )
    try:
        processor = cache_first(_transformers_class(processor_cls_name).from_pretrained, source)
        network, info = cache_first(_transformers_class(model_cls_name).from_pretrained, source, config=config, output_loading_info=True)
    except (OSError, ValueError, ImportError) as err:
        hint = "" if local else f" {_offline_hint(model)}"
        raise ModelLoadError(f"{kind} backend {backend!r}: could not load {model_cls_name}/{processor_cls_name} from {where}: {err}.{hint}") from err
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(
            f"{kind} backend {backend!r}: {where} lacks {len(missing)} weights of {model_cls_name} "
            f"({shown}); they would be random. Is it a {model_cls_name} checkpoint?"
        )
    try:
        files = weight_files_for(source, local_files_only=True)
    except ModelLoadError as err:
        raise ModelLoadError(f"{kind} backend {backend!r}: {err}") from err
    log.info("%s backend %s: loaded %s from %s (%d files)", kind, backend, model_cls_name, where, len(files))
    return network, processor, files


# --------------------------------------------------------------------------- model inputs


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` array (grey is repeated, alpha dropped)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"expected an RGB (H, W, 3) image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])


def to_pil(image: np.ndarray):
    """PIL image of an RGB array: unambiguous channel order for the processors (a (3, W, 3) array is not)."""
    from PIL import Image

    return Image.fromarray(as_rgb(image), mode="RGB")
