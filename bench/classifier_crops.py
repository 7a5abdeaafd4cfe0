"""Crops per second of the crop classifier (``HFCropClassifier.classify_batch``) on CPU.

Models: the tiny randomly initialised SigLIP and CLIP that ``tests/tiny_hf_models.py`` builds,
and a randomly initialised FULL-SIZE SigLIP-base (the google/siglip-base-patch16-224
architecture: ``SiglipConfig()``'s defaults, ViT-B/16 at 224 px and a 12-layer 768-wide text
tower; the tokenizer is the tiny test one, since only cost is measured). Random weights: these
rows say what the classifier costs, nothing about how well it labels.

Crops: ``--crops`` boxes (default 66) of varied sizes (16 px to most of the image) over three
real photos (scikit-image's astronaut, coffee, chelsea), the same for a given seed. One round is
one ``classify_batch`` call over all three images (what the detect stage does per detector
batch); its time includes cropping and the image processor, not the model load. After a
warm-up (a whole round for the tiny models, one batch for SigLIP-base), ``--tiny-rounds`` (tiny
models) or ``--rounds`` (SigLIP-base) timed rounds; the median counts. Load time (``from_pretrained`` and
embedding the label prompts) is reported separately.

    python bench/classifier_crops.py [--quick] [--no-base] [--threads 2] [--rounds 3] [--crops 66]  # ~3 min
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tiny_hf_models

LABELS = ["person", "cat", "cup", "rocket", "face", "car", "tree", "sign"]
PHOTOS = ("astronaut", "coffee", "chelsea")
RANDOM_NOTE = "random-init (cost only, not accuracy)"


def photos():
    from skimage import data

    return [getattr(data, name)()[:, :, :3] for name in PHOTOS]


def boxes_for(images, n_crops: int, seed: int = 0) -> list[list[list[float]]]:
    """``n_crops`` boxes spread over ``images``: sides from 16 px up to 90 % of the image, log-uniform."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_image = math.ceil(n_crops / len(images))
    out = []
    for image in images:
        h, w = image.shape[:2]
        boxes = []
        for _ in range(per_image):
            bw = float(np.exp(rng.uniform(np.log(16), np.log(0.9 * w))))
            bh = float(np.clip(bw * np.exp(rng.uniform(-0.7, 0.7)), 16, 0.9 * h))
            x0 = float(rng.uniform(0, w - bw))
            y0 = float(rng.uniform(0, h - bh))
            boxes.append([x0, y0, x0 + bw, y0 + bh])
        out.append(boxes)
    return out


def build_siglip_base(dest: Path) -> tuple[Path, str]:
    """A randomly initialised SigLIP-base (google/siglip-base-patch16-224 shapes) + processor in ``dest``."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    from tiny_hf_models import gemma_tokenizer

    tokenizer = gemma_tokenizer(model_max_length=64)
    specials = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = SiglipConfig(text_config=specials)  # everything else: the base defaults
    vision, text = config.vision_config, config.text_config
    shape = (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size, text.hidden_size, text.num_hidden_layers)
    if shape != (768, 12, 16, 224, 768, 12):
        raise SystemExit(f"SiglipConfig() defaults are not SigLIP-base any more: {shape}")
    torch.manual_seed(0)
    model = SiglipModel(config).eval()
    params = sum(p.numel() for p in model.parameters())
    processor = SiglipProcessor(image_processor=SiglipImageProcessorPil(size={"height": 224, "width": 224}), tokenizer=tokenizer)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    desc = (
        f"vision {vision.hidden_size}-wide x {vision.num_hidden_layers} layers, patch {vision.patch_size}, "
        f"{vision.image_size} px; text {text.hidden_size} x {text.num_hidden_layers}; {params / 1e6:.0f} M parameters"
    )
    return dest, desc


def measure(backend: str, folder: Path, batch_size: int, images, boxes, rounds: int, threads: int, full_warmup: bool) -> dict:
    from shardlens.models.crop_classifier import HFCropClassifier

    start = time.perf_counter()
    classifier = HFCropClassifier(backend, str(folder), LABELS, prompt_template="a photo of a {}", batch_size=batch_size, threads=threads)
    load_s = time.perf_counter() - start
    n_crops = sum(len(b) for b in boxes)
    if full_warmup:  # the tiny models: one whole round
        classifier.classify_batch(images, boxes, top_k=3)
    else:  # SigLIP-base: one full batch (at least 8 crops) is enough, and saves a minute
        classifier.classify_batch(images[:1], [boxes[0][: max(8, batch_size)]], top_k=3)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = classifier.classify_batch(images, boxes, top_k=3)
        times.append(time.perf_counter() - start)
    assert sum(len(r) for r in result) == n_crops and all(row for r in result for row in r)
    median = statistics.median(times)
    return {
        "crops_s": n_crops / median,
        "best_crops_s": n_crops / min(times),
        "ms_crop": 1000 * median / n_crops,
        "load_s": load_s,
        "spread": (min(times), max(times)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per row of SigLIP-base (the median counts)")
    parser.add_argument("--tiny-rounds", type=int, default=15, help="timed rounds per row of the tiny models (each takes milliseconds, so more of them)")
    parser.add_argument("--crops", type=int, default=66, help="boxes per round, over the three photos")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="24 crops, 3 rounds (tiny) / 1 (base), batch sizes 1 and 8: a smoke run (~30 s)")
    parser.add_argument("--no-base", action="store_true", help="leave out the full-size SigLIP-base")
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.crops, args.rounds, args.tiny_rounds, args.batch_sizes = 24, 1, 3, [1, 8]

    import torch

    import tiny_hf_models

    torch.set_num_threads(args.threads)
    load_before = wait_for_quiet(args.max_load, args.max_wait)
    images = photos()
    boxes = boxes_for(images, args.crops)
    n_crops = sum(len(b) for b in boxes)
    sides = sorted(max(b[2] - b[0], b[3] - b[1]) for bs in boxes for b in bs)
    log(f"{n_crops} crops over {len(images)} photos, longest side {sides[0]:.0f}-{sides[-1]:.0f} px")

    tmp = Path(tempfile.mkdtemp(prefix="shardlens-classifier-bench-"))
    rows: list[str] = []
    notes: list[str] = []
    started = time.perf_counter()
    try:
        models = []
        for backend in ("siglip", "clip"):
            folder = tiny_hf_models.build(backend, tmp / f"tiny-{backend}")
            models.append((f"tiny {backend} (tests/tiny_hf_models.py), {RANDOM_NOTE}", backend, folder, args.tiny_rounds, True))
        if not args.no_base:
            log("building a randomly initialised SigLIP-base")
            t0 = time.perf_counter()
            folder, desc = build_siglip_base(tmp / "siglip-base-random")
            size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            log(f"built and saved in {time.perf_counter() - t0:.1f} s ({size_mb:.0f} MB)")
            notes.append(f"SigLIP-base: {desc}; {size_mb:.0f} MB on disk (float32).")
            models.append((f"SigLIP-base shapes, {RANDOM_NOTE}", "siglip", folder, args.rounds, False))
        for label, backend, folder, rounds, full_warmup in models:
            for batch_size in args.batch_sizes:
                m = measure(backend, folder, batch_size, images, boxes, rounds, args.threads, full_warmup)
                log(f"{label} bs={batch_size}: {m['crops_s']:.1f} crops/s (rounds {m['spread'][0]:.2f}-{m['spread'][1]:.2f} s), load {m['load_s']:.2f} s")
                rows.append(f"| {label} | {batch_size} | {m['crops_s']:.1f} | {m['ms_crop']:.1f} | {m['best_crops_s']:.1f} | {m['load_s']:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body = [
        "| model | batch size | crops/s (median) | ms/crop | crops/s (best round) | load s |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    notes = [
        f"{n_crops} crops (longest side {sides[0]:.0f}-{sides[-1]:.0f} px) over scikit-image's {', '.join(PHOTOS)}; "
        f"{len(LABELS)} labels; {args.threads} torch threads (nproc {os.cpu_count()}); median of {args.tiny_rounds} (tiny) / "
        f"{args.rounds} (base) timed rounds of one `classify_batch` call over all three photos, after a warm-up (a whole round for the tiny models, "
        f"one batch of at least 8 crops for SigLIP-base); crops/s includes cropping and "
        f"the image processor; load s (from_pretrained + embedding the prompts) is not in it. The best round is what "
        f"an undisturbed machine gives; a wide gap to the median means other work shared the cores.",
        *notes,
        f"Total run time {time.perf_counter() - started:.0f} s.",
    ]
    emit("Crop classifier: crops per second (CPU)", command_line(), load_before, body, notes, append=args.append)


if __name__ == "__main__":
    main()
