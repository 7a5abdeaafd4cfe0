"""Hub-backed vision backends through ``transformers``: open-vocabulary detectors and crop classifiers.

Both classes load a model with ``from_pretrained(path_or_id)``: ``model`` is either a local
directory (e.g. one written by ``shardlens mirror-models`` or ``save_pretrained``) or a Hugging
Face hub id, resolved through the local HF cache first; only a hub id missing from the cache is
downloaded, and never with ``local_files_only=True`` (or ``HF_HUB_OFFLINE=1``).

* :class:`HFOpenVocabDetector`: OWLv2 / OWL-ViT (``Owl*ForObjectDetection``) and Grounding DINO
  (``GroundingDinoForObjectDetection``) with text prompts. ``detect_batch`` returns, per image,
  ``{"bbox": [x0, y0, x1, y1], "label": prompt, "score"}`` dicts, best first, boxes in original
  image pixels.
* :class:`HFCropClassifier`: SigLIP (sigmoid scores, independent per label) and CLIP (softmax over
  the labels) zero-shot classification of boxes cropped from an image.

Both expose ``name`` (the backend), ``model_id``, ``weight_files`` (the files loaded) and
``version`` (``backend:<model basename>@<sha12 over the weight files>``) so records can name the
exact weights that produced them.

Post-processing facts (transformers 5.24):

* OWL: ``processor.post_process_grounded_object_detection(outputs, threshold=, target_sizes=)``
  with ``target_sizes`` as ``(height, width)``; ``labels`` index the prompts of that image. OWLv2
  pads images to a square (bottom/right) and scales boxes by ``max(h, w)``, OWL-ViT scales by
  ``(w, h)``: both come back in original pixels.
* Grounding DINO: ``processor.post_process_grounded_object_detection(outputs, input_ids=,
  threshold=, text_threshold=, target_sizes=)``; its ``text_labels`` are decoded token phrases
  (not necessarily one prompt), so labels are mapped back to the prompts here through the
  token offsets of the joined prompt text ("a cat. a dog.").
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .weights import sha256_file

log = logging.getLogger(__name__)

# transformers classes of each hub backend: backend -> (model class, processor class, accepted
# config model_type). The list of detector backends is models/detectors.py's DETECTOR_BACKENDS.
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


def _model_files(folder: Path) -> list[Path]:
    """Regular files at the top of a model folder (what ``from_pretrained`` reads), sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in _IGNORED_FILES
    )


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
        files = _model_files(folder)
        if not files:
            raise ModelLoadError(f"model directory {str(folder)!r} holds no model files")
        return files
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(str(model), local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError and friends
        if local_files_only:
            raise ModelLoadError(
                f"hub model {str(model)!r} is not in the local Hugging Face cache ({_hf_cache()}): {err}. "
                f"{_offline_hint(str(model))}"
            ) from err
        snapshot = Path(snapshot_download(str(model)))
    return _model_files(snapshot)


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


def _load(
    kind: str, backend: str, table: dict[str, tuple[str, str, str]], model: str, local_files_only: bool
) -> tuple[Any, Any, list[Path]]:
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
            f"{kind} backend {backend!r}: could not load {where} "
            f"(local_files_only={local_files_only}, cache {_hf_cache()}): {err}. {_offline_hint(model)}"
        ) from err
    if config.model_type != model_type:
        raise ModelLoadError(
            f"{kind} backend {backend!r} needs a {model_type!r} model, but {where} holds a "
            f"{config.model_type!r} model; pick the matching backend or model"
        )
    try:
        processor = cache_first(_transformers_class(processor_cls_name).from_pretrained, source)
        network, info = cache_first(
            _transformers_class(model_cls_name).from_pretrained, source, config=config, output_loading_info=True
        )
    except (OSError, ValueError, ImportError) as err:
        hint = "" if local else f" {_offline_hint(model)}"
        raise ModelLoadError(
            f"{kind} backend {backend!r}: could not load {model_cls_name}/{processor_cls_name} "
            f"from {where}: {err}.{hint}"
        ) from err
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


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` array (grey is repeated, alpha dropped)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"expected an RGB (H, W, 3) image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])


def _to_pil(image: np.ndarray):
    """PIL image of an RGB array: unambiguous channel order for the processors (a (3, W, 3) array is not)."""
    from PIL import Image

    return Image.fromarray(_as_rgb(image), mode="RGB")


# --------------------------------------------------------------------------- detector


class HFOpenVocabDetector:
    """Open-vocabulary detector (OWLv2, OWL-ViT, Grounding DINO) prompted with text.

    ``detect_batch`` takes RGB uint8 ``(H, W, 3)`` arrays and returns per image a list of
    ``{"bbox": [x0, y0, x1, y1], "label": prompt, "score": float}`` sorted by score (best first),
    at most ``max_proposals`` of them with score above ``score_threshold``, boxes in original
    image pixels clipped to the image. ``label`` is always one of ``prompts``, verbatim.

    Grounding DINO sees all prompts at once as one text ("a cat. a dog."); OWL models score each
    prompt separately. Grounding DINO pads a batch to its largest image, which changes the
    features, so it is only batched across images of the same size (results do not depend on
    how images are grouped into calls).
    """

    def __init__(
        self,
        backend: str,
        model: str,
        prompts: list[str],
        score_threshold: float = 0.1,
        max_proposals: int = 100,
        batch_size: int = 4,
        device: str | None = None,
        threads: int = 1,
        local_files_only: bool = False,
    ) -> None:
        import torch

        prompts = [str(p).strip() for p in prompts]
        if not prompts or any(not p for p in prompts):
            raise ValueError(f"{backend}: prompts must be non-empty strings, got {prompts!r}")
        if len(set(prompts)) != len(prompts):
            raise ValueError(f"{backend}: duplicate prompts in {prompts!r}")
        if batch_size < 1 or max_proposals < 1:
            raise ValueError("batch_size and max_proposals must be >= 1")
        torch.set_num_threads(max(1, int(threads)))
        self.name = backend
        self.model_id = str(model)
        self.prompts = prompts
        self.score_threshold = float(score_threshold)
        self.max_proposals = int(max_proposals)
        self.batch_size = int(batch_size)
        self.device = _pick_device(device)
        network, self.processor, self.weight_files = _load(
            "detector", backend, HUB_DETECTOR_CLASSES, self.model_id, local_files_only
        )
        self.model = network.to(self.device).eval()
        self.version = model_version(backend, self.model_id, self.weight_files)
        self._dino_text: str | None = None
        self._token_prompt: np.ndarray | None = None
        if backend == "grounding-dino":
            self._prepare_dino_text()

    # -- Grounding DINO text ---------------------------------------------------------

    def _prepare_dino_text(self) -> None:
        """Join the prompts as the processor expects ("a cat. a dog.") and map tokens to prompts."""
        for prompt in self.prompts:
            if "." in prompt:
                raise ValueError(f"grounding-dino prompts cannot contain '.', which separates them: {prompt!r}")
        pieces = [p.lower() for p in self.prompts]
        text = ". ".join(pieces) + "."
        spans: list[tuple[int, int]] = []
        start = 0
        for piece in pieces:
            spans.append((start, start + len(piece)))
            start += len(piece) + 2
        encoding = self.processor.tokenizer(text, return_offsets_mapping=True)
        offsets = encoding["offset_mapping"]
        max_len = int(getattr(self.model.config, "max_text_len", 256))
        if len(offsets) > max_len:
            raise ValueError(
                f"grounding-dino: the joined prompts are {len(offsets)} tokens, more than the model's "
                f"max_text_len {max_len}; use fewer or shorter prompts"
            )
        token_prompt = np.full(len(offsets), -1, dtype=np.int64)
        for t, (lo, hi) in enumerate(offsets):
            if hi <= lo:
                continue  # special token
            for index, (s, e) in enumerate(spans):
                if s <= lo < e:
                    token_prompt[t] = index
                    break
        missing = [self.prompts[i] for i in range(len(self.prompts)) if i not in set(token_prompt.tolist())]
        if missing:
            raise ValueError(f"grounding-dino: prompts {missing!r} produced no tokens")
        self._dino_text = text
        self._token_prompt = token_prompt

    # -- inference --------------------------------------------------------------------

    def _groups(self, images: list[np.ndarray]) -> list[list[int]]:
        """Indices of the images run together: chunks of ``batch_size`` (same-size images for DINO)."""
        if self.name != "grounding-dino":
            order = list(range(len(images)))
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[:2]), []).append(i)
        groups: list[list[int]] = []
        for members in by_size.values():
            groups.extend(members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size))
        return groups

    def _run(self, images: list[np.ndarray]) -> list[list[dict]]:
        """Detections for one batch of RGB arrays."""
        import torch

        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        pil = [_to_pil(im) for im in images]
        if self.name == "grounding-dino":
            inputs = self.processor(images=pil, text=[self._dino_text] * len(pil), return_tensors="pt")
        else:
            inputs = self.processor(
                images=pil, text=[list(self.prompts)] * len(pil), truncation=True, return_tensors="pt"
            )
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.inference_mode():
            outputs = self.model(**inputs)
        target_sizes = torch.tensor(sizes, dtype=torch.float32)
        if self.name == "grounding-dino":
            results = self.processor.post_process_grounded_object_detection(
                outputs,
                input_ids=inputs["input_ids"],
                threshold=self.score_threshold,
                text_threshold=self.score_threshold,  # only shapes its text_labels, which are not used
                target_sizes=target_sizes,
            )
            labels = self._dino_labels(outputs.logits)
        else:
            results = self.processor.post_process_grounded_object_detection(
                outputs, threshold=self.score_threshold, target_sizes=target_sizes
            )
            labels = [[self.prompts[int(i)] for i in r["labels"].tolist()] for r in results]
        return [self._format(r, lab, size) for r, lab, size in zip(results, labels, sizes)]

    def _dino_labels(self, logits) -> list[list[str]]:
        """Per kept query (same order as the processor's), the prompt whose tokens score highest."""
        import torch

        # Same ops, dtype and device as the processor, so the kept queries are the same ones.
        probs = torch.sigmoid(logits)
        keep_mask = (probs.max(dim=-1).values > self.score_threshold).cpu()
        probs = probs.float().cpu()
        token_prompt = torch.from_numpy(self._token_prompt)
        n_tok = min(probs.shape[-1], len(token_prompt))
        per_prompt = torch.full((*probs.shape[:2], len(self.prompts)), -1.0)
        for index in range(len(self.prompts)):
            cols = torch.nonzero(token_prompt[:n_tok] == index).flatten()
            if len(cols):
                per_prompt[..., index] = probs[..., cols].max(dim=-1).values
        best = per_prompt.argmax(dim=-1)
        out: list[list[str]] = []
        for b in range(probs.shape[0]):
            out.append([self.prompts[int(i)] for i in best[b][keep_mask[b]].tolist()])
        return out

    def _format(self, result: dict, labels: list[str], size: tuple[int, int]) -> list[dict]:
        """Sort, cut to ``max_proposals``, clip to the image and convert to plain Python."""
        height, width = size
        scores = result["scores"].detach().float().cpu().numpy()
        boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
        if len(labels) != len(scores):
            raise RuntimeError(f"{self.name}: {len(labels)} labels for {len(scores)} boxes")
        order = np.argsort(-scores, kind="stable")[: self.max_proposals]
        detections: list[dict] = []
        for i in order:
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
                continue
            x0, x1 = sorted((min(max(x0, 0.0), float(width)), min(max(x1, 0.0), float(width))))
            y0, y1 = sorted((min(max(y0, 0.0), float(height)), min(max(y1, 0.0), float(height))))
            detections.append({"bbox": [x0, y0, x1, y1], "label": labels[i], "score": float(scores[i])})
        return detections

    def detect_batch(self, images: list[np.ndarray]) -> list[list[dict]]:
        """Detect the prompts in each RGB uint8 image; see the class docstring for the result format."""
        arrays = [_as_rgb(im) for im in images]
        results: list[list[dict]] = [[] for _ in arrays]
        for group in self._groups(arrays):
            for index, detections in zip(group, self._run([arrays[i] for i in group])):
                results[index] = detections
        return results


# --------------------------------------------------------------------------- classifier


class HFCropClassifier:
    """Zero-shot classifier of image crops: SigLIP (sigmoid scores) or CLIP (softmax over labels).

    The label texts (``prompt_template.format(label)``) are embedded once at construction;
    ``classify`` crops boxes from an image in memory, embeds the crops in batches and returns,
    per box, the ``top_k`` ``(label, score)`` pairs, best first (``[]`` for a box with no area
    inside the image).
    """

    def __init__(
        self,
        backend: str,
        model: str,
        labels: list[str],
        prompt_template: str = "a photo of a {}",
        batch_size: int = 16,
        device: str | None = None,
        threads: int = 1,
        local_files_only: bool = False,
    ) -> None:
        import torch

        labels = [str(label).strip() for label in labels]
        if not labels or any(not label for label in labels):
            raise ValueError(f"{backend}: labels must be non-empty strings, got {labels!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"{backend}: duplicate labels in {labels!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        torch.set_num_threads(max(1, int(threads)))
        self.name = backend
        self.model_id = str(model)
        self.labels = labels
        self.prompt_template = prompt_template
        self.batch_size = int(batch_size)
        self.device = _pick_device(device)
        network, self.processor, self.weight_files = _load(
            "classifier", backend, HUB_CLASSIFIER_CLASSES, self.model_id, local_files_only
        )
        self.model = network.to(self.device).eval()
        self.version = model_version(backend, self.model_id, self.weight_files)
        texts = [prompt_template.format(label) for label in labels]
        # As transformers' zero-shot-image-classification pipeline: SigLIP was trained on texts padded
        # to the full length (64 for the released models), CLIP pools at the EOS token so pads to the longest.
        if backend == "siglip":
            max_length = int(getattr(self.model.config.text_config, "max_position_embeddings", 64))
            text_kwargs: dict[str, Any] = {"padding": "max_length", "max_length": max_length, "truncation": True}
        else:
            text_kwargs = {"padding": True, "truncation": True}
        text_inputs = self.processor.tokenizer(texts, return_tensors="pt", **text_kwargs)
        text_inputs = {k: v.to(self.device) for k, v in text_inputs.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            text_embeds = _pooled(self.model.get_text_features(**text_inputs))
        self.text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        self.logit_scale = self.model.logit_scale.detach().exp()
        bias = getattr(self.model, "logit_bias", None)
        self.logit_bias = bias.detach() if bias is not None else None

    def _crop(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
        """The pixels of ``box`` clamped to the image, or None when nothing of it is inside."""
        height, width = image.shape[:2]
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            return None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            return None  # no area (or inverted)
        left, right = max(0, math.floor(x0)), min(width, math.ceil(x1))
        top, bottom = max(0, math.floor(y0)), min(height, math.ceil(y1))
        if right - left < 1 or bottom - top < 1:
            return None  # entirely outside the image
        return image[top:bottom, left:right]

    def _scores(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(len(crops), len(labels))`` scores for a batch of crops."""
        import torch

        pixel_values = self.processor.image_processor(images=[_to_pil(c) for c in crops], return_tensors="pt")[
            "pixel_values"
        ].to(self.device)
        with torch.inference_mode():
            image_embeds = _pooled(self.model.get_image_features(pixel_values=pixel_values))
            image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
            logits = image_embeds @ self.text_embeds.T * self.logit_scale
            if self.name == "siglip":
                probs = torch.sigmoid(logits + self.logit_bias)
            else:
                probs = logits.softmax(dim=-1)
        return probs.float().cpu().numpy()

    def classify(self, image: np.ndarray, boxes: list[list[float]], top_k: int = 3) -> list[list[tuple[str, float]]]:
        """Per box, the ``top_k`` ``(label, score)`` pairs best first; ``[]`` for a degenerate box."""
        return self.classify_batch([image], [boxes], top_k=top_k)[0]

    def classify_batch(
        self, images: list[np.ndarray], boxes: list[list[list[float]]], top_k: int = 3
    ) -> list[list[list[tuple[str, float]]]]:
        """``classify`` for several images at once: the crops of all of them go through the model
        together, ``batch_size`` crops at a time (the label texts were embedded once, at
        construction). A crop's scores do not depend on the crops beside it."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        top_k = max(0, min(int(top_k), len(self.labels)))
        results: list[list[list[tuple[str, float]]]] = [[[] for _ in image_boxes] for image_boxes in boxes]
        crops: list[np.ndarray] = []
        where: list[tuple[int, int]] = []
        for i, (image, image_boxes) in enumerate(zip(images, boxes)):
            if not image_boxes:
                continue
            array = _as_rgb(image)
            for k, box in enumerate(image_boxes):
                crop = self._crop(array, box)
                if crop is not None:
                    crops.append(crop)
                    where.append((i, k))
        if top_k == 0:
            return results
        for start in range(0, len(crops), self.batch_size):
            scores = self._scores(crops[start : start + self.batch_size])
            for (i, k), row in zip(where[start : start + self.batch_size], scores):
                order = np.argsort(-row, kind="stable")[:top_k]
                results[i][k] = [(self.labels[j], float(row[j])) for j in order]
        return results


def _pooled(output: Any):
    """The embedding from ``get_text_features``/``get_image_features`` (a pooled-output object in 5.x)."""
    pooled = getattr(output, "pooler_output", None)
    return output if pooled is None else pooled
