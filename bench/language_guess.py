"""Language guessing: first-call cost and accuracy of each lingua option, per OCR job.

lingua loads its n-gram models lazily, on the first guess: in every OCR job that pays the load
once. This prints, for each option, the cost of building the detector plus its first guess in a
fresh process (median of ``--repeat`` runs; the import of lingua itself is reported apart) and
the accuracy on the OCR harness's sign phrases (``bench/ocr_accuracy.py``: 10 per language, 9
languages; a null guess counts as wrong), with the guesser's own rules (``min_letters``,
``min_confidence``) applied.

    python bench/language_guess.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from ocr_accuracy import PHRASES

from _common import PYTHON, fmt_load, git_commit, log  # bench/ is the script's sys.path[0]

OPTIONS = {
    "19 languages, high accuracy (default)": {"low_accuracy": False},
    "19 languages, low accuracy mode": {"low_accuracy": True},
    "the harness's 9 languages, high accuracy": {"low_accuracy": False, "languages": sorted(PHRASES)},
}

WORKER = r"""
import json, sys, time
t0 = time.perf_counter()
import lingua
t_import = time.perf_counter() - t0
from shardlens.models.language import LanguageGuesser
from shardlens.options import LanguageOptions
options = json.loads(sys.argv[1])
phrases = json.loads(sys.argv[2])
t0 = time.perf_counter()
guesser = LanguageGuesser(LanguageOptions.from_values(options))
guesser.guess("Main Street Station")
t_first = time.perf_counter() - t0
right = total = 0
for language, texts in phrases.items():
    for text in texts:
        total += 1
        right += guesser.guess(text).language == language
print(json.dumps({"import_s": t_import, "first_s": t_first, "right": right, "total": total}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"Commit `{git_commit()}`, load before: {fmt_load()}\n")
    print("| option | lingua import (s) | build + first guess (s), median | accuracy on the harness phrases |\n|---|---|---|---|")
    for name, options in OPTIONS.items():
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([PYTHON, "-c", WORKER, json.dumps(options), json.dumps(PHRASES)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            log(f"{name}: {runs[-1]}")
        first = statistics.median(r["first_s"] for r in runs)
        imp = statistics.median(r["import_s"] for r in runs)
        right, total = runs[0]["right"], runs[0]["total"]
        print(f"| {name} | {imp:.2f} | {first:.2f} | {right / total:.3f} ({right}/{total}) |", flush=True)
    print(f"\nLoad after: {fmt_load()}")


if __name__ == "__main__":
    sys.exit(main())
