"""The quality scorer (shardlens.evaluation) on small hand-computed cases."""

from __future__ import annotations

import random

import pytest

from shardlens.evaluation import (
    box_scores,
    cluster_purity,
    detection_image_scores,
    drop_optional,
    edit_distance,
    gate_scores,
    iou,
    match_boxes,
    match_predictions,
    missing_predictions,
    nature_false_detections,
    normalise,
    ocr_scores,
    reading_order,
    score,
    top_label_accuracy,
)


def gold(file: str, **fields) -> dict:
    base = {"file": file, "category": "objects", "split": "test", "has_text": False, "text": [], "optional_text": [],
            "classes": [], "optional_classes": [], "boxes": [], "optional_boxes": []}  # fmt: skip
    return {**base, **fields}


def line(text: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"text": text, "bbox": [x0, y0, x1, y1], "score": 0.9}


def region(label: str, bbox, score: float = 0.9, cluster: int | None = None) -> dict:
    return {"label": label, "bbox": list(bbox), "score": score, "cluster_id": cluster}


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def test_normalise_nfkc_quotes_dashes_soft_hyphen_whitespace():
    assert normalise("\u201cCaf\u00e9\u201d \u2014 it\u2019s") == '"Café" - it\'s'
    assert normalise("e\u0301") == "é"  # NFKC composes
    assert normalise("\ufb01ne \u2460") == "fine 1"  # compatibility forms
    assert normalise("co\u00adoperate") == "cooperate"
    assert normalise("  a\tb\n\nc\u00a0d  ") == "a b c d"
    assert normalise("\u2018x\u2019 \u201ay\u201b \u00abz\u00bb") == "'x' 'y' \"z\""
    assert normalise("1\u20132 3\u22124 5\u20106") == "1-2 3-4 5-6"


def test_edit_distance_agrees_with_dynamic_programming():
    def slow(a: str, b: str) -> int:
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]

    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("abcé ") for _ in range(rng.randint(0, 80)))
        b = "".join(rng.choice("abcé ") for _ in range(rng.randint(0, 80)))
        assert edit_distance(a, b) == slow(a, b)
    assert edit_distance("kitten", "sitting") == 3


def test_reading_order_rows_then_x():
    # Row 1: "world" (x 200) and "Hello" (x 10), centres 3 px apart; row 2 below; a column line
    # right of row 2 whose centre is 12 px off (more than half its 20 px height): its own row.
    lines = [line("world", 200, 12, 300, 42), line("second", 10, 60, 100, 80), line("Hello", 10, 10, 100, 38),
             line("aside", 400, 72, 500, 92)]  # fmt: skip
    assert [ln["text"] for ln in reading_order(lines)] == ["Hello", "world", "second", "aside"]
    # A tall heading next to small print: rows decided by the smaller height.
    # Small print (centre 25) beside a tall heading (centre 40): 15 px apart, more than half the
    # smaller height (5 px), so two rows; 4 px apart, one row sorted by x.
    lines = [line("small", 300, 20, 400, 30), line("BIG", 10, 0, 200, 80)]
    assert [ln["text"] for ln in reading_order(lines)] == ["small", "BIG"]
    lines = [line("small", 300, 31, 400, 41), line("BIG", 10, 0, 200, 80)]
    assert [ln["text"] for ln in reading_order(lines)] == ["BIG", "small"]
    assert reading_order([]) == []


def test_drop_optional_text():
    assert drop_optional(["EXIT", "(c) 2021 Jane Doe", "Fire"], ["© 2021 Jane Doe"], ["EXIT"]) == ["EXIT", "Fire"]
    # a line that matches gold better than optional stays
    assert drop_optional(["Exit"], ["Exit"], ["EXIT"]) == ["Exit"]  # a tie goes to the gold line
    assert drop_optional(["EXIT"], ["exits"], ["EXIT"]) == ["EXIT"]
    assert drop_optional(["", "  "], [], []) == []


def test_cer_micro_macro_case_and_empty_image():
    g = [gold("a.png", has_text=True, text=["Hello", "world"]), gold("b.png", has_text=True, text=["OPEN"]),
         gold("c.png", has_text=True, text=["ABCDEFGHIJ"]), gold("d.jpg")]  # fmt: skip
    preds = {
        # reversed detection order: reading order restores it -> "Hello world" exact
        "a.png": {"lines": [line("world", 200, 10, 300, 40), line("Hello", 10, 10, 100, 40)]},
        "b.png": {"lines": [line("open", 0, 0, 50, 20)]},  # 4 case edits of 4
        # c.png: no line at all -> CER 1.0 (10 edits)
        "d.jpg": {"lines": [line("junk", 0, 0, 5, 5)]},  # no gold text: not in CER
    }
    r = ocr_scores(g, preds)
    assert r["images"] == 3 and r["reference_chars"] == 11 + 4 + 10
    assert r["cer_cs_micro"] == pytest.approx((0 + 4 + 10) / 25)
    assert r["cer_cs_macro"] == pytest.approx((0 + 1 + 1) / 3)
    assert r["cer_ci_micro"] == pytest.approx(10 / 25)
    assert r["cer_ci_macro"] == pytest.approx(1 / 3)
    assert r["per_image"]["c.png"]["cer_cs"] == 1.0
    # words: predicted Hello, world, open; gold Hello, world, OPEN, ABCDEFGHIJ -> 2 matched
    assert r["word_precision"] == pytest.approx(2 / 3) and r["word_recall"] == pytest.approx(2 / 4)
    assert r["word_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_optional_text_is_dropped_before_cer_and_words():
    g = [gold("s.jpg", has_text=True, text=["STOP"], optional_text=["Made in Germany 1998"])]
    with_small_print = {"s.jpg": {"lines": [line("STOP", 0, 0, 100, 50), line("Made in Germany 1993", 0, 90, 60, 96)]}}
    without = {"s.jpg": {"lines": [line("STOP", 0, 0, 100, 50)]}}
    for preds in (with_small_print, without):
        r = ocr_scores(g, preds)
        assert r["cer_cs_micro"] == 0.0 and r["word_f1"] == 1.0
    junk = {"s.jpg": {"lines": [line("STOP", 0, 0, 100, 50), line("zzzz", 0, 90, 60, 96)]}}
    assert ocr_scores(g, junk)["cer_cs_micro"] == pytest.approx(5 / 4)


def test_word_bag_f1_ignores_order():
    g = [gold("p.png", has_text=True, text=["left column text", "right column words"])]
    preds = {"p.png": {"lines": [line("right column words left column text", 0, 0, 10, 10)]}}
    assert ocr_scores(g, preds)["word_f1"] == 1.0


# --------------------------------------------------------------------------------------------
# Gate
# --------------------------------------------------------------------------------------------


def test_gate_precision_recall_with_ambiguous_and_missing():
    g = [gold("t1", has_text=True), gold("t2", has_text=True), gold("t3", has_text=True), gold("n1"), gold("n2"),
         gold("amb", has_text=None)]  # fmt: skip
    preds = {
        "t1": {"gate": {"has_text": True}},
        "t2": {"gate": {"has_text": False}},
        # t3: no gate record -> predicted false
        "n1": {"gate": {"has_text": True}},
        "n2": {"gate": {"has_text": False}},
        "amb": {"gate": {"has_text": True}},  # left out
    }
    r = gate_scores(g, preds)
    assert (r["tp"], r["fp"], r["fn"], r["tn"], r["images"]) == (1, 1, 2, 1, 5)
    assert r["precision"] == 0.5 and r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(0.4)
    assert r["false_negatives"] == ["t2", "t3"] and r["false_positives"] == ["n1"]
    # the decision instead: t1 found text but scored below the gate's threshold -> skip
    preds["t1"]["gate"]["decision"] = "skip"
    preds["n1"]["gate"]["decision"] = "ocr"
    r = gate_scores(g, preds, decision=True)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (0, 1, 3, 1)


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def test_detection_image_level_with_optional_classes_and_threshold():
    g = [gold("a", classes=["dog", "person"], optional_classes=["frisbee"]), gold("b", classes=["cat"])]
    preds = {
        "a": {
            "regions": [
                region("dog", [0, 0, 10, 10]),
                region("dog", [20, 0, 30, 10]),
                region("frisbee", [0, 0, 5, 5]),
                region("person", [0, 0, 9, 9], score=0.2),
            ]
        },
        "b": {"regions": [region("dog", [0, 0, 10, 10]), region("cat", [0, 0, 10, 10], score=0.5)]},
    }
    r = detection_image_scores(g, preds, threshold=0.3)
    # a: dog TP, frisbee optional, person below threshold -> FN; b: cat TP, dog FP
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    r = detection_image_scores(g, preds, threshold=0.1)
    assert (r["tp"], r["fp"], r["fn"]) == (3, 1, 0)


def test_iou_exclusive_corners():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching, no shared pixel


def test_box_matching_greedy_one_to_one_in_score_order():
    boxes = [{"label": "dog", "bbox": [0, 0, 100, 100]}, {"label": "dog", "bbox": [200, 0, 300, 100]}]
    regions = [region("dog", [0, 0, 100, 90], 0.9), region("dog", [0, 0, 100, 100], 0.8), region("cat", [200, 0, 300, 100], 0.7),
               region("dog", [210, 0, 300, 100], 0.6)]  # fmt: skip
    assert match_boxes(regions, boxes) == [0, None, None, 1]  # the duplicate of box 0 stays unmatched
    assert match_boxes(regions, boxes, same_label=False) == [0, None, 1, None]


def test_box_scores_precision_recall_agnostic_and_optional_boxes():
    g = [
        gold("a", classes=["dog", "person"], optional_classes=["car"],
             boxes=[{"label": "dog", "bbox": [0, 0, 100, 100]}, {"label": "person", "bbox": [200, 0, 300, 200]}],
             optional_boxes=[{"label": "dog", "bbox": [400, 400, 450, 450]}]),
        gold("b", category="nature", has_text=False),  # no classes: every region is false
        gold("c", classes=["cat"]),  # classes but no boxes: not in the box metrics
    ]  # fmt: skip
    preds = {
        "a": {
            "regions": [
                region("dog", [0, 0, 100, 100]),  # TP
                region("dog", [0, 0, 100, 100], 0.8),  # duplicate: FP
                region("cat", [200, 0, 300, 200]),  # wrong label: FP, but a class-agnostic match
                region("dog", [400, 400, 452, 450]),  # on an optional box: ignored
                region("car", [500, 500, 520, 520]),  # optional class without optional boxes: ignored
                region("dog", [0, 0, 100, 100], 0.1),  # below threshold: not counted
            ]
        },
        "b": {"regions": [region("bird", [0, 0, 10, 10])]},
        "c": {"regions": [region("cat", [0, 0, 10, 10])]},
    }
    r = box_scores(g, preds, threshold=0.3)
    # predicted: the TP, the duplicate, the cat, and the bird on b
    assert (r["gold_boxes"], r["matched"], r["predicted"], r["ignored"]) == (2, 1, 4, 2)
    assert r["recall"] == 0.5 and r["precision"] == pytest.approx(1 / 4)
    assert r["agnostic_recall"] == 1.0
    assert r["images_without_boxes"] == ["c"]


def test_nature_false_detections():
    g = [gold("n1", category="nature"), gold("n2", category="nature"), gold("n3", category="nature", has_text=True), gold("o1")]
    preds = {"n1": {"regions": [region("bird", [0, 0, 5, 5], 0.4)]}, "n2": {"regions": [region("bird", [0, 0, 5, 5], 0.2)]},
             "n3": {"regions": [region("bird", [0, 0, 5, 5])]}, "o1": {"regions": [region("dog", [0, 0, 5, 5])]}}  # fmt: skip
    r = nature_false_detections(g, preds, threshold=0.3)
    assert (r["images"], r["with_detection"], r["files"]) == (2, 1, ["n1"])


def test_top_label_accuracy_gold_or_optional():
    g = [gold("a", classes=["dog"], optional_classes=["person"]), gold("b", classes=["cat"]), gold("c", classes=["car"]),
         gold("d", classes=["car"]), gold("t", category="documents", classes=["book"])]  # fmt: skip
    preds = {"a": {"top_label": "person"}, "b": {"top_label": "Cat"}, "c": {"top_label": "truck"}, "d": {"top_label": None},
             "t": {"top_label": "tv"}}  # fmt: skip
    r = top_label_accuracy(g, preds)
    assert (r["images"], r["right"], r["wrong"]) == (4, 2, ["c", "d"])
    assert r["accuracy"] == 0.5


def test_cluster_purity_weighted_by_matched_size():
    dogs = [{"label": "dog", "bbox": [100 * i, 0, 100 * i + 50, 50]} for i in range(3)]
    g = [gold("a", classes=["dog", "cat"], boxes=[*dogs, {"label": "cat", "bbox": [0, 100, 50, 150]}]),
         gold("b", classes=["cat"], boxes=[{"label": "cat", "bbox": [0, 0, 50, 50]}])]  # fmt: skip
    preds = {
        # cluster 1: 3 dogs + 1 cat (purity 3/4); cluster 2: the other cat (1/1); a region off any box
        # and an unclustered matched region are left out
        "a": {
            "regions": [
                region("dog", dogs[0]["bbox"], cluster=1),
                region("dog", dogs[1]["bbox"], cluster=1),
                region("dog", dogs[2]["bbox"], cluster=-1),
                region("dog", [0, 100, 50, 150], cluster=1),  # the cat's box
                region("dog", [900, 900, 950, 950], cluster=1),
            ]
        },
        "b": {"regions": [region("cat", [0, 0, 50, 50], cluster=2)]},
    }
    r = cluster_purity(g, preds)
    assert (r["clusters"], r["members"], r["unclustered"]) == (2, 4, 1)
    assert r["purity"] == pytest.approx((2 + 1) / 4)
    preds["a"]["regions"][2]["cluster_id"] = 1  # third dog joins cluster 1: 3 dogs + 1 cat, + 1 cat
    assert cluster_purity(g, preds)["purity"] == pytest.approx((3 + 1) / 5)


# --------------------------------------------------------------------------------------------
# Matching, missing, and whole-set behaviour
# --------------------------------------------------------------------------------------------


def test_match_by_image_id_then_path_then_unique_name():
    g = [gold("x/a.jpg"), gold("x/b.jpg"), gold("x/c.jpg"), gold("x/d.jpg")]
    by_id = {"id-a": {"top_label": "A"}}
    by_file = {"x/b.jpg": {"top_label": "B"}, "other/c.jpg": {"top_label": "C"}, "y/d.jpg": {}, "z/d.jpg": {}}
    out = match_predictions(g, by_id, {"x/a.jpg": "id-a", "x/b.jpg": "id-unknown"}, by_file)
    assert out["x/a.jpg"]["top_label"] == "A" and out["x/b.jpg"]["top_label"] == "B" and out["x/c.jpg"]["top_label"] == "C"
    assert "x/d.jpg" not in out  # ambiguous base name
    assert missing_predictions(g, out) == ["x/d.jpg"]


def small_set() -> tuple[list[dict], dict]:
    """Six gold images and predictions that are exactly right."""
    g = [
        gold("doc.png", category="documents", has_text=True, text=["Invoice 4711", "Total 12.50"]),
        gold("sign.jpg", category="scene_text", has_text=True, text=["NO PARKING"], classes=["car"],
             boxes=[{"label": "car", "bbox": [10, 50, 200, 150]}]),
        gold("dog.jpg", classes=["dog"], boxes=[{"label": "dog", "bbox": [20, 20, 300, 260]}]),
        gold("cats.jpg", classes=["cat"], boxes=[{"label": "cat", "bbox": [0, 0, 100, 100]}, {"label": "cat", "bbox": [150, 0, 250, 100]}]),
        gold("forest.jpg", category="nature"),
        gold("bus.jpg", classes=["bus", "person"], boxes=[{"label": "bus", "bbox": [0, 0, 400, 300]},
                                                          {"label": "person", "bbox": [410, 100, 450, 300]}]),
    ]  # fmt: skip
    preds: dict[str, dict] = {}
    for i, item in enumerate(g):
        lines = [line(t, 10, 10 + 40 * k, 300, 40 + 40 * k) for k, t in enumerate(item["text"])]
        regions = [region(b["label"], b["bbox"], 0.9, cluster={"car": 0, "dog": 1, "cat": 2, "bus": 3, "person": 4}[b["label"]])
                   for b in item["boxes"]]  # fmt: skip
        preds[item["file"]] = {"gate": {"has_text": item["has_text"]}, "lines": lines, "regions": regions,
                               "top_label": item["classes"][0] if item["classes"] else None}  # fmt: skip
    return g, preds


def headline(report: dict) -> dict:
    return {
        "gate_f1": report["gate"]["f1"], "cer": report["ocr"]["cer_cs_micro"], "cer_macro": report["ocr"]["cer_cs_macro"],
        "word_f1": report["ocr"]["word_f1"], "image_p": report["detect_image"]["precision"],
        "image_r": report["detect_image"]["recall"], "box_p": report["boxes"]["precision"], "box_r": report["boxes"]["recall"],
        "agnostic": report["boxes"]["agnostic_recall"], "top": report["top_label"]["accuracy"], "purity": report["purity"]["purity"],
    }  # fmt: skip


def test_perfect_predictions_score_perfectly():
    g, preds = small_set()
    report = score(g, preds, threshold=0.35)
    assert report["missing"] == {"count": 0, "files": []}
    h = headline(report)
    assert h.pop("cer") == 0.0 and h.pop("cer_macro") == 0.0
    assert report["ocr"]["cer_ci_micro"] == 0.0 and report["ocr"]["cer_ci_macro"] == 0.0
    assert all(v == 1.0 for v in h.values()), h
    assert report["nature"]["with_detection"] == 0


def test_shuffled_predictions_score_clearly_worse():
    g, preds = small_set()
    files = [item["file"] for item in g]
    shuffled = {f: preds[files[(i + 1) % len(files)]] for i, f in enumerate(files)}  # each gets the next one's
    good, bad = headline(score(g, preds, 0.35)), headline(score(g, shuffled, 0.35))
    assert bad["cer"] >= 0.8 and bad["cer_macro"] >= 0.8
    for key in ("word_f1", "image_p", "image_r", "box_p", "box_r", "agnostic", "top"):
        assert bad[key] <= good[key] - 0.5, (key, bad[key])
    assert bad["gate_f1"] < good["gate_f1"]
    assert score(g, shuffled, 0.35)["nature"]["with_detection"] == 1


def test_missing_predictions_are_named_and_scored_empty():
    g, preds = small_set()
    del preds["doc.png"], preds["dog.jpg"]
    report = score(g, preds, threshold=0.35)
    assert report["missing"] == {"count": 2, "files": ["doc.png", "dog.jpg"]}
    assert report["ocr"]["per_image"]["doc.png"]["cer_cs"] == 1.0
    assert report["gate"]["fn"] == 1 and report["boxes"]["recall"] == pytest.approx(5 / 6)
    assert report["top_label"]["wrong"] == ["dog.jpg"]


def test_score_parts():
    g, preds = small_set()
    assert set(score(g, preds, 0.3, parts=["ocr"])) == {"images", "missing", "ocr"}
    with pytest.raises(ValueError, match="unknown parts"):
        score(g, preds, 0.3, parts=["boxes"])
