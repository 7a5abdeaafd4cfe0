"""Open-vocabulary detection with hub models: OWLv2 / OWL-ViT (``Owl*ForObjectDetection``) and
Grounding DINO (``GroundingDinoForObjectDetection``) prompted with text.

``detect_batch`` returns, per image, ``{"bbox": [x0, y0, x1, y1], "label": prompt, "score"}``
dicts, best first, boxes in original image pixels. The model is found and loaded by
:mod:`shardlens.models.hub_resolution`.

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

import math

import numpy as np

from .hub_resolution import HUB_DETECTOR_CLASSES, as_rgb, load_model, model_version, pick_device, to_pil


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

    :func:`shardlens.models.detectors.make_detector` builds it from the detect options
    (``detect.score_threshold``, ``detect.max_detections``, ``detect.batch_size``): it takes every
    value of the config, and declares no default of its own. ``device`` (None: the best one) and
    ``local_files_only`` (no hub download) are no options of the config.
    """

    def __init__(
        self,
        backend: str,
        model: str,
        prompts: list[str],
        score_threshold: float,
        max_proposals: int,
        batch_size: int,
        threads: int,
        *,
        device: str | None = None,
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
        self.device = pick_device(device)
        network, self.processor, self.weight_files = load_model("detector", backend, HUB_DETECTOR_CLASSES, self.model_id, local_files_only)
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
                f"grounding-dino: the joined prompts are {len(offsets)} tokens, more than the model's max_text_len {max_len}; use fewer or shorter prompts"
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
        pil = [to_pil(im) for im in images]
        if self.name == "grounding-dino":
            inputs = self.processor(images=pil, text=[self._dino_text] * len(pil), return_tensors="pt")
        else:
            inputs = self.processor(images=pil, text=[list(self.prompts)] * len(pil), truncation=True, return_tensors="pt")
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
            results = self.processor.post_process_grounded_object_detection(outputs, threshold=self.score_threshold, target_sizes=target_sizes)
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
        arrays = [as_rgb(im) for im in images]
        results: list[list[dict]] = [[] for _ in arrays]
        for group in self._groups(arrays):
            for index, detections in zip(group, self._run([arrays[i] for i in group])):
                results[index] = detections
        return results
