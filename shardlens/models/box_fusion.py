"""Weighted box fusion (Solovyev et al., 2021): merge the detections of several views of one
image (test-time flips, scales) or of several models into one set of regions.

Unlike NMS, which keeps one box of an overlapping group and drops the rest, fusion averages the
group's coordinates weighted by score, and scores the fused box by how many views agreed:
``mean score x min(views that found it, n_views) / n_views``. An object seen in every view keeps
its score; a box only one view of two produced is halved, which is what makes views vote.
The box geometry (``box_iou``) lives here too; NanoDet's NMS uses it.
"""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box with each of ``(N, 4)`` boxes (0 where the union is empty)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_box_fusion(views: list[list[dict]], iou_threshold: float = 0.55, weights: list[float] | None = None) -> list[dict]:
    """Fuse per-view detections (dicts with ``bbox``, ``label``, ``score``; other keys of the
    best member are kept) into one list, best first. Deterministic: ties by view, then order."""
    n_views = len(views)
    weights = weights or [1.0] * n_views
    items = [(d, v, k) for v, dets in enumerate(views) for k, d in enumerate(dets)]
    items.sort(key=lambda t: (-t[0]["score"] * weights[t[1]], t[1], t[2]))
    fused: list[dict] = []
    for label in sorted({d["label"] for d, _, _ in items}):
        clusters: list[list[tuple[dict, int]]] = []
        boxes: list[np.ndarray] = []  # current fused box of each cluster
        for det, view, _ in (t for t in items if t[0]["label"] == label):
            box = np.asarray(det["bbox"], dtype=np.float64)
            if boxes:
                ious = box_iou(box, np.stack(boxes))
                best = int(np.argmax(ious))
                if ious[best] > iou_threshold:
                    clusters[best].append((det, view))
                    members = clusters[best]
                    w = np.array([m["score"] * weights[v] for m, v in members])
                    coords = np.stack([np.asarray(m["bbox"], dtype=np.float64) for m, _ in members])
                    boxes[best] = (coords * w[:, None]).sum(axis=0) / max(w.sum(), 1e-12)
                    continue
            clusters.append([(det, view)])
            boxes.append(box)
        for members, box in zip(clusters, boxes):
            views_seen = len({v for _, v in members})
            scores = [m["score"] * weights[v] for m, v in members]
            score = float(np.mean(scores)) * min(views_seen, n_views) / n_views / max(weights)
            lead = members[0][0]
            fused.append({**lead, "bbox": [float(c) for c in box], "score": score})
    fused.sort(key=lambda d: (-d["score"], d["label"], d["bbox"]))
    return fused
