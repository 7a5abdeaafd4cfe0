"""Time per image of each NanoDet option on the real-image quality set (CPU, 2 threads).

The quality of each option is in ``bench/quality.py``'s tables (run it with
``--config detect.resize=stretch`` or ``detect.flip=true``); this script prints what each costs:
the median and mean milliseconds per image of ``NanoDetDetector.detect_batch`` on one image at a
time (decode excluded, model loaded once), over the 96 images of ``tests/quality``.

    python bench/detect_options.py [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from PIL import Image, ImageOps

from shardlens.models.nanodet import NanoDetDetector
from shardlens.options import DetectOptions

from _common import REPO, fmt_load, git_commit, log  # bench/ is the script's sys.path[0]

OPTIONS = {
    "letterbox (default)": {"resize": "letterbox", "flip": False},
    "stretch": {"resize": "stretch", "flip": False},
    "letterbox + flip (WBF)": {"resize": "letterbox", "flip": True},
    "stretch + flip (WBF)": {"resize": "stretch", "flip": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the set per option (the median is over all)")
    args = parser.parse_args()
    quality = REPO / "tests" / "quality"
    files = [g["file"] for g in json.loads((quality / "ground_truth.json").read_text())["images"]]
    images = []
    for name in files:
        with Image.open(quality / "images" / name) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            rgb.thumbnail((1024, 1024))  # detect.decode_max_side
            images.append(np.asarray(rgb))
    log(f"{len(images)} images; load {fmt_load()}")
    print(f"Commit `{git_commit()}`, {args.threads} threads, load before: {fmt_load()}\n")
    print("| option | median ms/image | mean ms/image |\n|---|---|---|")
    for name, options in OPTIONS.items():
        detector = NanoDetDetector(DetectOptions.from_values(options), threads=args.threads)
        detector.detect_batch(images[:1])  # warm-up
        times = []
        for _ in range(args.repeat):
            for image in images:
                start = time.perf_counter()
                detector.detect_batch([image])
                times.append((time.perf_counter() - start) * 1000)
        print(f"| {name} | {statistics.median(times):.1f} | {statistics.fmean(times):.1f} |", flush=True)
    print(f"\nLoad after: {fmt_load()}")


if __name__ == "__main__":
    main()
