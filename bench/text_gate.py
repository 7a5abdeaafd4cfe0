"""Text gate: time of gate + OCR of the gated images vs OCR of every image, and what OCR reads
either way, on a generated mixed set (half rendered text, half scikit-image photo crops).

Both arms call the real stage functions in this process with the default config and threads=2:
gated = `stages.gate.run_shard` then `stages.ocr.run_shard` on its decisions; ungated =
`stages.ocr.run_shard` with a gate file that sends every image to OCR. Each arm loads its models
once (included in its time). The arms run alternately, `--repeats` times each; the medians count.

Recall: a ground-truth line is found when an OCR line of its image matches it (case and spaces
ignored, difflib ratio >= 0.8); a text image is read when at least one of its lines is found.

    python bench/text_gate.py [--images 120] [--append]
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_common_args, command_line, emit, generate_images, log, wait_for_quiet  # noqa: E402

sys.path.insert(0, str(REPO))


def norm(text: str) -> str:
    return "".join(text.lower().split())


def found_lines(truth_lines: list[str], ocr_texts: list[str]) -> int:
    got = [norm(t) for t in ocr_texts]
    n = 0
    for line in truth_lines:
        want = norm(line)
        if any(want in g or difflib.SequenceMatcher(None, want, g).ratio() >= 0.8 for g in got):
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    add_common_args(parser)
    args = parser.parse_args()

    from shardlens.config import load_config
    from shardlens.images import Limits, list_images
    from shardlens.records import SCHEMA_VERSION, read_jsonl, write_jsonl
    from shardlens.shards import plan_shards, write_listings
    from shardlens.stages import gate, ingest, ocr

    tmp = Path(tempfile.mkdtemp(prefix="shardlens-gate-"))
    images = tmp / "images"
    log(f"generating {args.images} images")
    truth = generate_images(images, args.images, text_fraction=0.5, seed=1)
    config = load_config(images=str(images))
    limits = Limits(**config["limits"])
    cache = tmp / "cache"
    plan = plan_shards(list_images(str(images)), 1)
    write_listings(plan, cache / "shards")
    shard = plan.names[0]
    ingest_out = cache / "ingest" / f"{shard}.jsonl"
    ingest.run_shard(listing=cache / "shards" / f"{shard}.tsv", images_root=images, output=ingest_out, shard=shard, limits=limits)
    path_of = {r["image_id"]: r["path"] for r in read_jsonl(ingest_out, "ingest")}
    all_ocr = cache / "gate_all" / f"{shard}.jsonl"
    write_jsonl(
        all_ocr,
        "gate",
        [
            {"schema_version": SCHEMA_VERSION, "image_id": i, "has_text": True, "score": 1.0, "decision": "ocr", "skip_reason": None, "text_regions": 1, "gate_version": "none"}
            for i in path_of
        ],
    )

    def run_gated() -> tuple[float, float]:
        t0 = time.perf_counter()
        gate.run_shard(ingest=ingest_out, images_root=images, output=cache / "gate" / f"{shard}.jsonl", shard=shard, threads=2, limits=limits, **config["gate"])
        t1 = time.perf_counter()
        ocr.run_shard(ingest=ingest_out, gate=cache / "gate" / f"{shard}.jsonl", images_root=images, output=cache / "ocr_gated" / f"{shard}.jsonl", shard=shard, threads=2, limits=limits, **config["ocr"])
        return t1 - t0, time.perf_counter() - t1

    def run_ungated() -> float:
        t0 = time.perf_counter()
        ocr.run_shard(ingest=ingest_out, gate=all_ocr, images_root=images, output=cache / "ocr_all" / f"{shard}.jsonl", shard=shard, threads=2, limits=limits, **config["ocr"])
        return time.perf_counter() - t0

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    gate_s, ocr_gated_s, ocr_all_s = [], [], []
    for k in range(args.repeats):
        log(f"repeat {k + 1}/{args.repeats}: ungated OCR")
        ocr_all_s.append(run_ungated())
        log(f"  {ocr_all_s[-1]:.1f} s; gate + gated OCR")
        g, o = run_gated()
        gate_s.append(g)
        ocr_gated_s.append(o)
        log(f"  gate {g:.1f} s + OCR {o:.1f} s")
    t_gate, t_ocr_gated, t_all = statistics.median(gate_s), statistics.median(ocr_gated_s), statistics.median(ocr_all_s)

    decisions = {r["image_id"]: r["decision"] for r in read_jsonl(cache / "gate" / f"{shard}.jsonl", "gate")}

    def lines_by_path(path: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in read_jsonl(path, "ocr"):
            out.setdefault(path_of[r["image_id"]], []).append(r["text"])
        return out

    gated_lines = lines_by_path(cache / "ocr_gated" / f"{shard}.jsonl")
    all_lines = lines_by_path(cache / "ocr_all" / f"{shard}.jsonl")
    gated_in = {path_of[i] for i, d in decisions.items() if d == "ocr"}
    text_paths = [p for p, t in truth.items() if t["has_text"]]
    photo_paths = [p for p, t in truth.items() if not t["has_text"]]
    n_truth_lines = sum(len(truth[p]["lines"]) for p in text_paths)

    def recall(lines: dict[str, list[str]]) -> tuple[int, int]:
        found = {p: found_lines(truth[p]["lines"], lines.get(p, [])) for p in text_paths}
        return sum(found.values()), sum(1 for v in found.values() if v > 0)

    g_lines, g_read = recall(gated_lines)
    a_lines, a_read = recall(all_lines)
    read_ungated = {p for p in text_paths if found_lines(truth[p]["lines"], all_lines.get(p, [])) > 0}
    lost = sorted(read_ungated - gated_in)
    text_gated_in = sum(p in gated_in for p in text_paths)
    photos_gated_in = sum(p in gated_in for p in photo_paths)
    photo_lines_all = sum(len(all_lines.get(p, [])) for p in photo_paths)
    photo_lines_gated = sum(len(gated_lines.get(p, [])) for p in photo_paths)
    ratio = (t_gate + t_ocr_gated) / t_all

    lines = [
        f"{args.images} generated 640x480 images: {len(text_paths)} with 1–3 rendered lines ({n_truth_lines} lines in all: "
        f"dark on light, light on dark, banners over photos), {len(photo_paths)} scikit-image photo crops without text. "
        f"Default gate and OCR config, threads=2, model loads included; median of {args.repeats} alternating runs.",
        "",
        "| arm | gate (s) | OCR (s) | total (s) | × of OCR-everything | images OCR'd | text images read | lines found | OCR lines on photos |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| OCR on everything | – | {t_all:.1f} | {t_all:.1f} | 1.00 | {len(path_of)} | {a_read}/{len(text_paths)} | {a_lines}/{n_truth_lines} | {photo_lines_all} |",
        f"| gate + OCR on gated | {t_gate:.1f} | {t_ocr_gated:.1f} | {t_gate + t_ocr_gated:.1f} | **{ratio:.2f}** (target ≤ 0.5) | {len(gated_in)} | {g_read}/{len(text_paths)} | {g_lines}/{n_truth_lines} | {photo_lines_gated} |",
        "",
        f"Gate decisions: {text_gated_in}/{len(text_paths)} text images and {photos_gated_in}/{len(photo_paths)} photos sent to OCR. "
        f"Text images read without the gate but skipped by it (lost): **{len(lost)}**"
        + (f" ({', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''})." if lost else "."),
    ]
    emit("Text gate: gate + OCR vs OCR on everything", command_line(), load_before, lines, append=args.append)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
