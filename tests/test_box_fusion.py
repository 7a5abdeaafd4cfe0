"""Weighted box fusion and the detector's test-time views."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from shardlens.models.box_fusion import weighted_box_fusion


def det(label, score, bbox):
    return {"label": label, "score": score, "bbox": bbox}


def test_fusion_averages_agreeing_boxes_and_halves_lonely_ones():
    a = [det("cat", 0.8, [0, 0, 100, 100]), det("dog", 0.6, [200, 200, 300, 300])]
    b = [det("cat", 0.4, [10, 10, 110, 110])]
    fused = weighted_box_fusion([a, b], iou_threshold=0.55)
    cat = next(d for d in fused if d["label"] == "cat")
    assert cat["score"] == pytest.approx(0.6)  # mean of both views, both agreed
    assert cat["bbox"] == pytest.approx([10 * 0.4 / 1.2, 10 * 0.4 / 1.2, 100 + 10 * 0.4 / 1.2, 100 + 10 * 0.4 / 1.2])
    dog = next(d for d in fused if d["label"] == "dog")
    assert dog["score"] == pytest.approx(0.3) and dog["bbox"] == [200, 200, 300, 300]
    assert [d["label"] for d in fused] == ["cat", "dog"]  # best first


def test_fusion_never_merges_other_classes_or_distant_boxes():
    a = [det("cat", 0.9, [0, 0, 100, 100])]
    b = [det("dog", 0.9, [0, 0, 100, 100]), det("cat", 0.9, [150, 0, 250, 100])]
    fused = weighted_box_fusion([a, b])
    assert sorted((d["label"], d["bbox"][0]) for d in fused) == [("cat", 0), ("cat", 150), ("dog", 0)]
    assert all(d["score"] == pytest.approx(0.45) for d in fused)


def test_flip_and_stretch_views_find_the_same_objects():
    from skimage import data

    from shardlens.models.nanodet import NanoDetDetector, box_iou
    from shardlens.options import DetectOptions

    image = data.astronaut()
    plain = NanoDetDetector(DetectOptions.from_values(), threads=1).detect_batch([image])[0]
    for detector in (
        NanoDetDetector(DetectOptions.from_values({"flip": True}), threads=1),
        NanoDetDetector(DetectOptions.from_values({"resize": "stretch"}), threads=1),
    ):
        found = detector.detect_batch([image])[0]
        person = next(d for d in found if d["label"] == "person")
        reference = next(d for d in plain if d["label"] == "person")
        assert box_iou(np.array(reference["bbox"]), np.array([person["bbox"]]))[0] > 0.8
        assert person["candidates"][0] == ("person", person["score"])
    with pytest.raises(ValueError, match="unknown resize mode"):
        NanoDetDetector(dataclasses.replace(DetectOptions.from_values(), resize="crop"), threads=1)  # past the schema's check


def test_a_region_keeps_the_class_it_was_detected_as():
    from shardlens.stages.detect import merge_candidates

    # the 'cat' box of a cell whose 'dog' score is higher (that cell's dog box is another region)
    labels = merge_candidates([("cat", 0.41), ("dog", 0.72), ("horse", 0.1)], [], top_k=3)
    assert [c["label"] for c in labels] == ["cat", "dog", "horse"]
    # with a crop classifier, candidates rank by score, each label once with its best score
    both = merge_candidates([("cat", 0.41), ("dog", 0.72)], [("cat", 0.9), ("tiger", 0.2)], top_k=3)
    assert [(c["label"], c["source"]) for c in both] == [("cat", "classifier"), ("dog", "detector"), ("tiger", "classifier")]
