"""What an ontology does to NanoDet's regions on the real-image quality set.

Every region NanoDet finds at ``detect.score_threshold`` (0.35) on the 96 images of
``tests/quality`` is recorded as the detect stage records it (native names), then mapped with
the ontology as the regions stage maps it (``shardlens.ontology.apply_ontology``). A region is
right when its label is one of the image's gold classes (``classes`` or ``optional_classes``),
the gold classes mapped through the same ontology for the mapped side: so the mapped side is
scored at the ontology's granularity (a cup called "bowl" is right as "tableware"). Prints the
counts before and after, and every dropped region with its reason.

    python bench/ontology_effect.py [--ontology config/ontology.yaml]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
from PIL import Image, ImageOps

from shardlens.config import load_config
from shardlens.models.nanodet import NanoDetDetector
from shardlens.ontology import apply_ontology, load_ontology
from shardlens.options import DetectOptions
from shardlens.stages.detect import merge_candidates

from _common import REPO, fmt_load, git_commit, log  # bench/ is the script's sys.path[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ontology", default=str(REPO / "config" / "ontology.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    detect = load_config()["detect"]
    ontology = load_ontology(args.ontology)
    quality = REPO / "tests" / "quality"
    gold = json.loads((quality / "ground_truth.json").read_text())["images"]
    detector = NanoDetDetector(
        DetectOptions.from_values({"score_threshold": detect["score_threshold"], "iou_threshold": detect["iou_threshold"]}), threads=args.threads
    )
    counts, dropped = Counter(), []
    for image in gold:
        with Image.open(quality / "images" / image["file"]) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            rgb.thumbnail((detect["decode_max_side"],) * 2)
        classes = set(image["classes"]) | set(image.get("optional_classes", []))
        mapped_classes = {ontology.target(c)[0] for c in classes} - {None}
        for det in detector.detect_batch([np.asarray(rgb)])[0]:
            labels = merge_candidates(det.get("candidates") or [(det["label"], det["score"])], [], detect["top_k"])
            right = det["label"] in classes
            counts["native right" if right else "native wrong"] += 1
            region, reason = apply_ontology({"labels": labels}, ontology)
            if region is None:
                counts[f"dropped ({reason}), {'right' if right else 'wrong'} before"] += 1
                dropped.append((image["file"], det["label"], round(det["score"], 2), reason, "right" if right else "wrong"))
            else:
                counts["mapped right" if region["caption"] in mapped_classes else "mapped wrong"] += 1
    log(f"{len(gold)} images; load {fmt_load()}")
    print(f"Commit `{git_commit()}`, ontology `{args.ontology}`, NanoDet at {detect['score_threshold']}\n")
    print("| regions | count |\n|---|---|")
    for key in sorted(counts):
        print(f"| {key} | {counts[key]} |")
    print("\n| dropped: image | native label | score | reason | before |\n|---|---|---|---|---|")
    for row in sorted(dropped):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
