"""Quality scoring: OCR, text gate, detection and labels against the quality set's ground truth.

Every figure follows ``quality-metrics.md`` (the project's metric definitions). Pure functions
over plain data, no I/O:

* a **gold image** is an entry of ``tests/quality/ground_truth.json`` (see
  :mod:`shardlens.quality_set`): ``file``, ``category``, ``has_text``, ``text``,
  ``optional_text``, ``classes``, ``optional_classes``, ``boxes``, ``optional_boxes``;
* a **prediction** (:class:`Prediction`) holds what one system said about one image: its gate
  result, its OCR lines, its regions (top label, score, box, cluster) and its top label.
  A system that does not produce a part leaves it out, and the metrics of that part are not
  asked of it.

Predictions are keyed by the gold ``file`` (:func:`match_predictions` does the matching by
``image_id``, else by file name). A gold image with no prediction is reported as missing
(:func:`missing_predictions`) and scored as an empty prediction: no gate record (predicted
false), no OCR line (CER 1.0), no region.
"""

from __future__ import annotations

import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, TypedDict

# Typographic quotes and dashes -> ASCII (after NFKC, which keeps these characters as they are).
_ASCII = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d", "-"),
        "\u00ad": None,  # soft hyphen
    }
)
IOU_MATCH = 0.5
OPTIONAL_TEXT_TOLERANCE = 0.25  # a predicted line "matches" optional gold within this share of edits


class GateResult(TypedDict, total=False):
    has_text: bool
    score: float
    decision: str


class Line(TypedDict, total=False):
    text: str
    bbox: Sequence[float]  # [x0, y0, x1, y1]
    score: float


class Region(TypedDict, total=False):
    label: str  # the region's top label
    score: float
    bbox: Sequence[float]  # [x0, y0, x1, y1], pixels after EXIF orientation, x1/y1 exclusive
    cluster_id: int | None  # machine-label cluster (-1 or None: unclustered)


class Prediction(TypedDict, total=False):
    gate: GateResult | None
    lines: list[Line]
    regions: list[Region]
    top_label: str | None


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """NFKC; typographic quotes and dashes to ASCII; soft hyphens removed; whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_ASCII).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1).

    Myers' bit-parallel algorithm (Hyyrö's formulation) on Python integers: linear in the longer
    string times the word count of the shorter, so whole pages score in milliseconds.
    """
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full, top = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & full) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def cer(predicted: str, truth: str) -> float:
    """Character error rate: edit distance over the length of the normalised truth."""
    p, t = normalise(predicted), normalise(truth)
    if not t:
        return 0.0 if not p else 1.0
    return edit_distance(p, t) / len(t)


def _box(item: Mapping[str, Any]) -> Sequence[float] | None:
    box = item.get("bbox")
    return box if box is not None and len(box) == 4 else None


def reading_order(lines: Sequence[Line]) -> list[Line]:
    """Lines top to bottom, then left to right.

    Lines sorted by vertical centre join the current row while their centre lies within half a
    line height (the smaller of the line's height and the row's mean height) of the row's mean
    centre; each row is sorted by x0. Lines without a box keep their order, after the others.
    """
    boxed = [line for line in lines if _box(line) is not None]
    rest = [line for line in lines if _box(line) is None]

    def centre(line: Line) -> float:
        return (line["bbox"][1] + line["bbox"][3]) / 2

    def height(line: Line) -> float:
        return max(line["bbox"][3] - line["bbox"][1], 1e-9)

    rows: list[list[Line]] = []
    for line in sorted(boxed, key=lambda ln: (centre(ln), ln["bbox"][0])):
        if rows:
            row = rows[-1]
            row_centre = statistics.fmean(centre(r) for r in row)
            row_height = statistics.fmean(height(r) for r in row)
            if abs(centre(line) - row_centre) <= 0.5 * min(height(line), row_height):
                row.append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln["bbox"][0])] + rest


def _relative_distance(a: str, b: str) -> float:
    return edit_distance(a, b) / max(len(a), len(b), 1)


def drop_optional(texts: Sequence[str], optional: Sequence[str], gold: Sequence[str] = ()) -> list[str]:
    """The predicted texts without those that match an optional gold line, and without empty ones.

    A text matches an optional line when, normalised and case-folded, it is within
    ``OPTIONAL_TEXT_TOLERANCE`` edits per character of it, and closer to it than to any gold line.
    """
    opt = [normalise(o).casefold() for o in optional]
    wanted = [normalise(g).casefold() for g in gold]
    kept = []
    for text in texts:
        n = normalise(text).casefold()
        if not n:
            continue
        d_opt = min((_relative_distance(n, o) for o in opt), default=float("inf"))
        d_gold = min((_relative_distance(n, g) for g in wanted), default=float("inf"))
        if d_opt <= OPTIONAL_TEXT_TOLERANCE and d_opt < d_gold:
            continue
        kept.append(text)
    return kept


def predicted_text(gold: Mapping[str, Any], prediction: Prediction | None) -> list[str]:
    """An image's predicted lines as scored: in reading order, optional text dropped."""
    lines = reading_order((prediction or {}).get("lines") or [])
    return drop_optional([line.get("text", "") for line in lines], gold.get("optional_text", []), gold.get("text", []))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def ocr_scores(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction]) -> dict[str, Any]:
    """CER (micro and macro, case-sensitive and case-insensitive) and word-bag F1 over the images
    with gold text. An image with gold text and no line scores CER 1.0."""
    totals = {"cs": [0, 0], "ci": [0, 0]}  # [edits, reference characters]
    rates: dict[str, list[float]] = {"cs": [], "ci": []}
    words = [0, 0, 0]  # matched, predicted, gold
    per_image = {}
    for g in gold:
        truth = normalise(" ".join(g.get("text", [])))
        if not truth:
            continue
        texts = predicted_text(g, predictions.get(g["file"]))
        pred = normalise(" ".join(texts))
        image = {"predicted": pred, "truth": truth}
        for case, (p, t) in {"cs": (pred, truth), "ci": (pred.casefold(), truth.casefold())}.items():
            edits = edit_distance(p, t)
            totals[case][0] += edits
            totals[case][1] += len(t)
            rates[case].append(edits / len(t))
            image[f"cer_{case}"] = edits / len(t)
        pw, gw = Counter(pred.split()), Counter(truth.split())
        matched = sum((pw & gw).values())
        words[0] += matched
        words[1] += sum(pw.values())
        words[2] += sum(gw.values())
        image["word_f1"] = _f1(_ratio(matched, sum(pw.values())) or 0.0, _ratio(matched, sum(gw.values())))
        per_image[g["file"]] = image
    word_p, word_r = _ratio(words[0], words[1]), _ratio(words[0], words[2])
    return {
        "images": len(per_image),
        "reference_chars": totals["cs"][1],
        "cer_cs_micro": _ratio(*totals["cs"]),
        "cer_cs_macro": statistics.fmean(rates["cs"]) if rates["cs"] else None,
        "cer_ci_micro": _ratio(*totals["ci"]),
        "cer_ci_macro": statistics.fmean(rates["ci"]) if rates["ci"] else None,
        "word_precision": word_p,
        "word_recall": word_r,
        "word_f1": _f1(word_p if word_p is not None else 0.0, word_r),
        "per_image": per_image,
    }


# --------------------------------------------------------------------------------------------
# Gate
# --------------------------------------------------------------------------------------------


def gate_scores(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], decision: bool = False) -> dict[str, Any]:
    """Precision, recall, F1 of ``has_text`` over images whose gold ``has_text`` is true or false
    (null is left out); an image without a gate record counts as predicted false.

    With ``decision`` the gate's ``decision`` is scored instead (``ocr`` = predicted text): the
    images OCR actually ran on, once the gate's score threshold is applied.
    """
    tp = fp = fn = tn = 0
    false_positives, false_negatives = [], []
    for g in gold:
        if g.get("has_text") is None:
            continue
        gate = (predictions.get(g["file"]) or {}).get("gate") or {}
        said = gate.get("decision") == "ocr" if decision else bool(gate.get("has_text", False))
        if said and g["has_text"]:
            tp += 1
        elif said:
            fp += 1
            false_positives.append(g["file"])
        elif g["has_text"]:
            fn += 1
            false_negatives.append(g["file"])
        else:
            tn += 1
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "images": tp + fp + fn + tn,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": precision, "recall": recall, "f1": _f1(precision, recall),
        "false_positives": false_positives, "false_negatives": false_negatives,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def _name(label: str | None) -> str:
    return (label or "").strip().casefold()


def _regions(prediction: Prediction | None, threshold: float) -> list[Region]:
    """Regions at or above the threshold, best first."""
    regions = [r for r in (prediction or {}).get("regions") or [] if r.get("score", 0.0) >= threshold]
    return sorted(regions, key=lambda r: -r.get("score", 0.0))


def detection_image_scores(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], threshold: float) -> dict[str, Any]:
    """Image-level precision and recall over (image, class) pairs; the predicted set of an image
    is the top label of every region with score >= threshold. A predicted optional class is
    neither a TP nor an FP."""
    tp = fp = fn = 0
    for g in gold:
        want = {_name(c) for c in g.get("classes", [])}
        allowed = want | {_name(c) for c in g.get("optional_classes", [])}
        said = {_name(r.get("label")) for r in _regions(predictions.get(g["file"]), threshold)}
        tp += len(said & want)
        fp += len(said - allowed)
        fn += len(want - said)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes (x1, y1 exclusive)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(regions: Sequence[Region], boxes: Sequence[Mapping[str, Any]], same_label: bool = True, min_iou: float = IOU_MATCH) -> list[int | None]:
    """Greedy one-to-one matching in the given (score) order: each region takes the unmatched
    gold box of its label (any label when ``same_label`` is false) with the highest IoU >= min_iou.
    Returns, per region, the index of its gold box or None."""
    taken: set[int] = set()
    matches: list[int | None] = []
    for region in regions:
        best, best_iou = None, min_iou
        for j, box in enumerate(boxes):
            if j in taken or (same_label and _name(box["label"]) != _name(region.get("label"))):
                continue
            overlap = iou(region["bbox"], box["bbox"])
            if overlap >= best_iou:
                best, best_iou = j, overlap
        if best is not None:
            taken.add(best)
        matches.append(best)
    return matches


def _ignored(region: Region, g: Mapping[str, Any]) -> bool:
    """An unmatched region that counts neither TP nor FP: it matches an optional box (same label,
    IoU >= 0.5), or its label is an optional class for which no optional box is drawn."""
    label = _name(region.get("label"))
    optional_boxes = [b for b in g.get("optional_boxes", []) if _name(b["label"]) == label]
    if any(iou(region["bbox"], b["bbox"]) >= IOU_MATCH for b in optional_boxes):
        return True
    return not optional_boxes and label in {_name(c) for c in g.get("optional_classes", [])}


def boxes_annotated(g: Mapping[str, Any]) -> bool:
    """Whether an image takes part in the box metrics: it has gold boxes, or no gold class (so any
    region on it is false). An image with classes but no boxes has no box annotation."""
    return bool(g.get("boxes")) or not g.get("classes")


def box_scores(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], threshold: float) -> dict[str, Any]:
    """Box recall and precision at IoU 0.5 (same label, greedy in score order) and class-agnostic
    recall, over regions with score >= threshold on images with box annotations."""
    gold_boxes = matched = agnostic = predicted = ignored = 0
    skipped = []
    for g in gold:
        if not boxes_annotated(g):
            skipped.append(g["file"])
            continue
        regions = _regions(predictions.get(g["file"]), threshold)
        boxes = g.get("boxes", [])
        matches = match_boxes(regions, boxes)
        gold_boxes += len(boxes)
        matched += sum(m is not None for m in matches)
        agnostic += sum(m is not None for m in match_boxes(regions, boxes, same_label=False))
        for region, m in zip(regions, matches):
            if m is None and _ignored(region, g):
                ignored += 1
            else:
                predicted += 1
    precision, recall = _ratio(matched, predicted), _ratio(matched, gold_boxes)
    return {
        "gold_boxes": gold_boxes, "predicted": predicted, "matched": matched, "ignored": ignored,
        "precision": precision, "recall": recall, "f1": _f1(precision, recall),
        "agnostic_recall": _ratio(agnostic, gold_boxes), "images_without_boxes": skipped,
    }  # fmt: skip


def nature_false_detections(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], threshold: float) -> dict[str, Any]:
    """Text-free nature photos (category nature, has_text false) with any region >= threshold."""
    photos = [g for g in gold if g.get("category") == "nature" and g.get("has_text") is False]
    hit = [g["file"] for g in photos if _regions(predictions.get(g["file"]), threshold)]
    return {"images": len(photos), "with_detection": len(hit), "share": _ratio(len(hit), len(photos)), "files": hit}


def top_label_accuracy(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction]) -> dict[str, Any]:
    """Share of object images (category objects, with gold classes) whose top machine label is a
    gold or optional class. No label is wrong."""
    right, wrong = 0, []
    for g in gold:
        if g.get("category") != "objects" or not g.get("classes"):
            continue
        allowed = {_name(c) for c in [*g.get("classes", []), *g.get("optional_classes", [])]}
        label = (predictions.get(g["file"]) or {}).get("top_label")
        if label is not None and _name(label) in allowed:
            right += 1
        else:
            wrong.append(g["file"])
    return {"images": right + len(wrong), "right": right, "accuracy": _ratio(right, right + len(wrong)), "wrong": wrong}


def cluster_purity(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], threshold: float = 0.0) -> dict[str, Any]:
    """Object-cluster purity over regions matched (class-agnostic, IoU >= 0.5) to a gold box: per
    cluster, the share of its matched members whose gold class is the cluster's majority gold
    class, weighted by the cluster's matched size. Unclustered regions (-1, None) are counted
    apart, not scored."""
    clusters: dict[int, Counter] = {}
    unclustered = 0
    for g in gold:
        regions = _regions(predictions.get(g["file"]), threshold)
        boxes = g.get("boxes", [])
        for region, m in zip(regions, match_boxes(regions, boxes, same_label=False)):
            if m is None:
                continue
            cluster = region.get("cluster_id")
            if cluster is None or cluster < 0:
                unclustered += 1
                continue
            clusters.setdefault(int(cluster), Counter())[_name(boxes[m]["label"])] += 1
    members = sum(sum(c.values()) for c in clusters.values())
    majority = sum(max(c.values()) for c in clusters.values())
    return {"clusters": len(clusters), "members": members, "unclustered": unclustered, "purity": _ratio(majority, members)}


# --------------------------------------------------------------------------------------------
# Matching and the whole report
# --------------------------------------------------------------------------------------------


def match_predictions(
    gold: Sequence[Mapping[str, Any]],
    by_image_id: Mapping[str, Prediction],
    image_ids: Mapping[str, str],
    by_file: Mapping[str, Prediction] | None = None,
) -> dict[str, Prediction]:
    """Predictions keyed by gold file: by ``image_id`` (``image_ids`` maps gold file -> sha256),
    else by relative path, else by base name when that is unique among the predictions."""
    by_file = by_file or {}
    names = Counter(PurePosixPath(f).name for f in by_file)
    by_name = {PurePosixPath(f).name: p for f, p in by_file.items() if names[PurePosixPath(f).name] == 1}
    out: dict[str, Prediction] = {}
    for g in gold:
        file = g["file"]
        iid = image_ids.get(file)
        if iid is not None and iid in by_image_id:
            out[file] = by_image_id[iid]
        elif file in by_file:
            out[file] = by_file[file]
        elif PurePosixPath(file).name in by_name:
            out[file] = by_name[PurePosixPath(file).name]
    return out


def missing_predictions(gold: Iterable[Mapping[str, Any]], predictions: Mapping[str, Prediction]) -> list[str]:
    """Gold files without any prediction (scored as empty predictions, and reported)."""
    return [g["file"] for g in gold if g["file"] not in predictions]


PARTS = ("gate", "ocr", "detect", "top_label", "clusters")


def score(gold: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], threshold: float, parts: Iterable[str] = PARTS) -> dict[str, Any]:
    """Every metric of the chosen parts (gate, ocr, detect, top_label, clusters) for one system,
    with the missing images named."""
    parts = set(parts)
    if unknown := parts - set(PARTS):
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    missing = missing_predictions(gold, predictions)
    report: dict[str, Any] = {"images": len(gold), "missing": {"count": len(missing), "files": missing}}
    if "gate" in parts:
        report["gate"] = gate_scores(gold, predictions)
        report["gate_decision"] = gate_scores(gold, predictions, decision=True)
    if "ocr" in parts:
        report["ocr"] = ocr_scores(gold, predictions)
    if "detect" in parts:
        report["detect_image"] = detection_image_scores(gold, predictions, threshold)
        report["boxes"] = box_scores(gold, predictions, threshold)
        report["nature"] = nature_false_detections(gold, predictions, threshold)
    if "top_label" in parts:
        report["top_label"] = top_label_accuracy(gold, predictions)
    if "clusters" in parts:
        report["purity"] = cluster_purity(gold, predictions, threshold)
    return report


# --------------------------------------------------------------------------------------------
# Per-item verdicts: is one machine label right (the simulated reviewer, bench/review_effort.py)
# --------------------------------------------------------------------------------------------

LINE_TOLERANCE = OPTIONAL_TEXT_TOLERANCE  # a line is right within this share of edits of a gold line


def region_verdicts(g: Mapping[str, Any], regions: Sequence[Region]) -> list[bool]:
    """Per region (in the given order), whether its label is right, by the detection rules:

    - on an image with box annotations (:func:`boxes_annotated`): right when it matches a gold
      box (same label, IoU >= 0.5, greedy in score order, :func:`match_boxes`) or the metrics
      ignore it (an optional box or class, :func:`_ignored`: neither TP nor FP, so a reviewer
      accepts it); wrong otherwise (a false box);
    - on an image with classes but no boxes: right when its label is a gold or optional class
      (the image-level rule)."""
    if not boxes_annotated(g):
        allowed = {_name(c) for c in [*g.get("classes", []), *g.get("optional_classes", [])]}
        return [_name(r.get("label")) in allowed for r in regions]
    order = sorted(range(len(regions)), key=lambda i: -regions[i].get("score", 0.0))
    ranked = [regions[i] for i in order]
    matches = match_boxes(ranked, g.get("boxes", []))
    verdict = [m is not None or _ignored(r, g) for r, m in zip(ranked, matches)]
    out = [False] * len(regions)
    for i, v in zip(order, verdict):
        out[i] = v
    return out


def line_verdicts(g: Mapping[str, Any], texts: Sequence[str]) -> list[bool]:
    """Per OCR line, whether its text is right: normalised and case-folded (as CER compares), it
    is within :data:`LINE_TOLERANCE` edits per character of a gold or optional gold line, or
    (a gold line the recogniser split in pieces) it is a part of one, at least 3 characters
    long. A line on an image without gold text is wrong unless it matches optional text."""
    lines = [normalise(t).casefold() for t in [*g.get("text", []), *g.get("optional_text", [])]]
    out = []
    for text in texts:
        n = normalise(text).casefold()
        close = any(_relative_distance(n, ref) <= LINE_TOLERANCE for ref in lines)
        part = len(n) >= 3 and any(n in ref for ref in lines)
        out.append(bool(n) and (close or part))
    return out
