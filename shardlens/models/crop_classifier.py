"""Zero-shot classification of image crops with hub models: SigLIP (sigmoid scores, independent
per label) and CLIP (softmax over the labels). The model is found and loaded by
:mod:`shardlens.models.hub_resolution`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .hub_resolution import HUB_CLASSIFIER_CLASSES, as_rgb, load_model, model_version, pick_device, to_pil

# Crops per forward pass in the detect stage (no option of the config: a crop's scores do not
# depend on the crops beside it, so this only trades memory for speed)
CROP_BATCH_SIZE = 16


class HFCropClassifier:
    """Zero-shot classifier of image crops: SigLIP (sigmoid scores) or CLIP (softmax over labels).

    The label texts (``prompt_template.format(label)``) are embedded once at construction;
    ``classify`` crops boxes from an image in memory, embeds the crops in batches and returns,
    per box, the ``top_k`` ``(label, score)`` pairs, best first (``[]`` for a box with no area
    inside the image).

    :func:`shardlens.models.detectors.make_classifier` builds it from the detect options
    (``detect.classifier.prompt_template``; ``batch_size`` :data:`CROP_BATCH_SIZE`, ``top_k``
    ``detect.top_k``): it declares no default of its own. ``device`` (None: the best one) and
    ``local_files_only`` (no hub download) are no options of the config.
    """

    def __init__(
        self,
        backend: str,
        model: str,
        labels: list[str],
        prompt_template: str,
        batch_size: int,
        threads: int,
        *,
        device: str | None = None,
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
        self.device = pick_device(device)
        network, self.processor, self.weight_files = load_model("classifier", backend, HUB_CLASSIFIER_CLASSES, self.model_id, local_files_only)
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

        pixel_values = self.processor.image_processor(images=[to_pil(c) for c in crops], return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            image_embeds = _pooled(self.model.get_image_features(pixel_values=pixel_values))
            image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
            logits = image_embeds @ self.text_embeds.T * self.logit_scale
            if self.name == "siglip":
                probs = torch.sigmoid(logits + self.logit_bias)
            else:
                probs = logits.softmax(dim=-1)
        return probs.float().cpu().numpy()

    def classify(self, image: np.ndarray, boxes: list[list[float]], top_k: int) -> list[list[tuple[str, float]]]:
        """Per box, the ``top_k`` ``(label, score)`` pairs best first; ``[]`` for a degenerate box."""
        return self.classify_batch([image], [boxes], top_k=top_k)[0]

    def classify_batch(self, images: list[np.ndarray], boxes: list[list[list[float]]], top_k: int) -> list[list[list[tuple[str, float]]]]:
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
            array = as_rgb(image)
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
