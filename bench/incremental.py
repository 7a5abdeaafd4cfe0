"""Incremental re-run at scale: the workflow's aggregate jobs (planning, clusters, manifest,
catalog, exports, report) over a synthetic cache of `--images` images, built in full and then
re-run after one shard changed, both through `snakemake --cores 2` as a user runs it.

Nothing runs OCR or detection here: the bench writes what every shard's stage jobs would have
written, so that Snakemake counts those jobs as done. For each shard of the plan (the listing
and shard count the workflow derives: `shards.size`, default from config/schema.yaml; 1,000,000
listed paths at size 500 are 2,048 shards) it writes the shard listing, the six cache files
(ingest, gate, OCR, detect, regions, embed; records checked against shardlens/contracts), each job's log
(ending with its JSON summary line) and benchmark TSV, with modification times in stage order, and
then the shard's job record (`logs/jobs/{shard}.json`, as its shard_jobs job writes it).
Snakemake keeps no metadata for files it did not write, so only its mtime trigger applies to
them, and the outputs are newer than their inputs: the first `snakemake --cores 2` (the "full
build") runs the aggregate jobs only. The bench stops a run whose job stats name a per-shard
rule. The images are not on disk: a generated list file (`listing.list_file`) names them, as in
bench/plan_scale.py, so planning still reads and stats a million paths.

The changed shard: the bench rewrites one shard's six cache files, logs and benchmarks as its
stage jobs would after `--changed-images` of its images changed (new bytes, so new image ids;
new OCR lines, one never seen anywhere before per image; new boxes and label candidates). The
second, timed `snakemake --cores 2` therefore runs no stage job: its wall time is planning, the
shard's job record (shard_jobs) and every aggregate job the change triggers (clusters, manifest,
catalog, exports, ingest report, report figures), which is what the issue's target (≤ 90 s on 2
cores) counts. A real change would also run that shard's seven stage jobs (listing, ingest, gate,
OCR, detect, regions, embed: ~91 s at 500 images per shard, BENCHMARKS.md), which the target
leaves out.

Records, sized like a real run's (a demo run's cache: ingest ~235 bytes a record, gate ~255,
OCR ~315 a line, detect ~430 a region, embed ~2.3 kB a distinct text; ≈ 118,000 catalog rows
per 10,000 images, as bench/catalog_import.py): photos of 4 camera sizes, 0.2 % ingest errors
(truncated); 30 % of images go to OCR (gate score ≥ 0.8), 8 % have text below the threshold;
1-8 OCR lines per gated image (mean 2); 0-4 regions per image with 3 COCO-class candidates
(class frequencies Zipf-like: "person" most). OCR lines are drawn from 3,000,000 possible lines
with a Zipf-Mandelbrot frequency (1/(rank + 3)): about 200,000 distinct lines among the 600,000
of a million images, 30,000 at 100,000 images (the table reports the counts). Each line is 1-5
words from a 30,000-word generated vocabulary (itself Zipf-distributed), sometimes with a
number, upper or capitalised. Vectors are 384-d float32 unit vectors (shardlens/vectors.py's
encoding), a function of the text alone: the normalised sum of its words' vectors (each seeded
by the word's hash) plus a noise vector seeded by the text's hash, so a text has one vector in
every shard and texts that share words lie close, as sentence embeddings of short texts do.

Prints a table (and with --append adds it to BENCHMARKS.md): images, shards, catalog rows, the
full build's wall time and peak memory (max RSS over snakemake and its children), the second
invocation's wall time, its time until the first job starts (planning), each rule's job time
from its benchmarks/*.tsv, and whether the 90 s target was met. The generated data lives in
`--work` (default: a new folder in /tmp), removed at the end unless --keep.

    python bench/incremental.py --images 20000
    python bench/incremental.py [--images 1000000] [--size 500] [--timeout 14400] [--work DIR --keep] [--append]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_scale import make_listing  # noqa: E402

from _common import PYTHON, REPO, add_common_args, command_line, emit, fmt_load, load_average, log, snakemake_cmd, wait_for_quiet, write_workdir_config  # noqa: E402

sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from shardlens.config import load_config  # noqa: E402
from shardlens.images.listing import list_images  # noqa: E402
from shardlens.quality_set import COCO_CLASSES  # noqa: E402
from shardlens.records import (  # noqa: E402
    SCHEMA_VERSION,
    dumps,
    record_check,  # noqa: E402
    validate_record,
)
from shardlens.shard_jobs import write_shard_jobs  # noqa: E402
from shardlens.shards import listing_text, plan_shards, shard_count_for, write_listing  # noqa: E402
from shardlens.stages import SHARD_STAGES  # noqa: E402
from shardlens.vectors import encode_vector  # noqa: E402

TARGET_S = 90.0
DIM = 384
SEED = 17
PER_SHARD_RULES = {"shard_listing", *SHARD_STAGES}
# stage -> record kind, the order the per-shard jobs run in (modification times follow it)
STAGE_ORDER = ("ingest", "gate", "ocr", "detect", "regions", "embed")
VERSIONS = {
    "gate": "ppocr-det-onnx:PP-OCRv6_det_small@090f04abcd9d",
    "ocr": "rapidocr-3.10.0:PP-OCRv6_rec_small@6f327246b503",
    "detect": "nanodet:nanodet-g-416@c9d073dba714",
    "embed": "all-MiniLM-L6-v2@53aa51172d14",
}
CAMERAS = ((4032, 3024, 0.45), (3024, 4032, 0.2), (1920, 1080, 0.2), (1280, 960, 0.15))  # width, height, share
OCR_LINES_POSSIBLE = 3_000_000
WORD_VOCABULARY = 30_000


# --------------------------------------------------------------------------------------------
# Texts and their vectors
# --------------------------------------------------------------------------------------------


def _zipf_cdf(n: int, offset: float = 3.0, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / (np.arange(n, dtype=np.float64) + offset) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


class TextSource:
    """OCR lines by Zipf rank, COCO-class candidates, and every text's vector (a function of the
    text alone)."""

    def __init__(self, seed: int = SEED):
        self.seed = seed
        self.line_cdf = _zipf_cdf(OCR_LINES_POSSIBLE)
        self.word_cdf = _zipf_cdf(WORD_VOCABULARY, offset=10.0)
        self.class_cdf = _zipf_cdf(len(COCO_CLASSES), offset=1.0, exponent=1.2)
        self.words = self._make_words(WORD_VOCABULARY)
        self._line_cache: dict[int, str] = {}
        self._word_vectors: dict[str, np.ndarray] = {}

    def _make_words(self, n: int) -> list[str]:
        rng = np.random.default_rng([self.seed, 1])
        onsets = "b c d f g h k l m n p r s t v w z br ch cl dr fr gr pl pr sh st tr".split()
        vowels = "a e i o u ai ea ee oo ou".split()
        codas = ["", "", "n", "r", "s", "t", "l", "nd", "st", "ck"]
        seen: set[str] = set()
        words: list[str] = []
        while len(words) < n:
            k = int(rng.integers(1, 4))
            word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(k))
            word += codas[rng.integers(len(codas))]
            if len(word) >= 2 and word not in seen:
                seen.add(word)
                words.append(word)
        return words

    def line_ranks(self, rng, n: int) -> np.ndarray:
        return np.searchsorted(self.line_cdf, rng.random(n))

    def line(self, rank: int) -> str:
        """The OCR line of a Zipf rank: 1-5 words (2-3 most), sometimes a number, cased."""
        text = self._line_cache.get(rank)
        if text is None:
            rng = np.random.default_rng([self.seed, 2, rank])
            k = int(rng.choice(5, p=(0.2, 0.35, 0.25, 0.12, 0.08))) + 1
            words = [self.words[i] for i in np.searchsorted(self.word_cdf, rng.random(k))]
            if rng.random() < 0.25:
                words.append(str(int(rng.integers(1, 10_000))))
            text = " ".join(words)
            case = rng.random()
            text = text.upper() if case < 0.4 else text.capitalize() if case < 0.8 else text
            self._line_cache[rank] = text
        return text

    def novel_line(self, tag: str) -> str:
        """A line no rank produces (the changed shard's new text)."""
        rng = np.random.default_rng([self.seed, 3, int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "big")])
        words = [self.words[i] for i in rng.integers(0, len(self.words), 3)]
        return "Newly " + " ".join(words) + f" {tag}"

    def classes(self, rng, n: int) -> list[str]:
        """``n`` distinct COCO classes, frequent ones first more often."""
        picked: list[str] = []
        while len(picked) < n:
            name = COCO_CLASSES[int(np.searchsorted(self.class_cdf, rng.random()))]
            if name not in picked:
                picked.append(name)
        return picked

    def _word_vector(self, word: str) -> np.ndarray:
        vector = self._word_vectors.get(word)
        if vector is None:
            vector = np.random.default_rng(_text_seed("word:" + word.lower())).standard_normal(DIM)
            vector /= np.linalg.norm(vector)
            self._word_vectors[word] = vector
        return vector

    @lru_cache(maxsize=200_000)  # noqa: B019 (one instance per run)
    def vector(self, text: str) -> str:
        """The text's vector, encoded as embedding records hold it (shardlens.vectors)."""
        words = text.split()
        total = sum(self._word_vector(w) for w in words) / np.sqrt(len(words))
        noise = np.random.default_rng(_text_seed("text:" + text)).standard_normal(DIM) / np.sqrt(DIM)
        vector = total + 0.6 * noise
        return encode_vector(vector / np.linalg.norm(vector))


def _text_seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


# --------------------------------------------------------------------------------------------
# One shard's stage outputs
# --------------------------------------------------------------------------------------------


def _image_index(path: str) -> int:
    return int(path.rsplit("_", 1)[1].split(".", 1)[0])


def shard_records(shard: str, paths: list[str], texts: TextSource, changed: set[str] = frozenset()) -> dict[str, list[dict]]:
    """Every stage's records of one shard, in the order the stages write them. Images in
    ``changed`` get new bytes (a new image id) and new OCR lines and regions."""
    rng = np.random.default_rng([texts.seed, 4, int(shard)])
    camera_cdf = np.cumsum([c[2] for c in CAMERAS])
    out: dict[str, list[dict]] = {stage: [] for stage in STAGE_ORDER}
    for path in paths:
        # every image draws the same amount from the shard's generator, so an image's records do
        # not depend on whether an image before it changed
        draws = rng.random(12)
        line_ranks = texts.line_ranks(rng, 8)
        box_draws = rng.random((4, 4))
        class_rng = np.random.default_rng([texts.seed, 5, _image_index(path)])
        new = path in changed
        if new:
            draws[3:] = np.random.default_rng([texts.seed, 6, _image_index(path)]).random(9)
            line_ranks = texts.line_ranks(np.random.default_rng([texts.seed, 7, _image_index(path)]), 8)
            box_draws = np.random.default_rng([texts.seed, 8, _image_index(path)]).random((4, 4))
            class_rng = np.random.default_rng([texts.seed, 9, _image_index(path)])
        image_id = hashlib.sha256(f"{path}{'#changed' if new else ''}".encode()).hexdigest()
        width, height, _ = CAMERAS[int(np.searchsorted(camera_cdf, draws[0] * camera_cdf[-1]))]
        size = int(300_000 + draws[1] * 4_700_000) + (1 if new else 0)
        error = draws[2] < 0.002
        out["ingest"].append({
            "schema_version": SCHEMA_VERSION, "image_id": image_id, "path": path, "bytes": size,
            "width": None if error else width, "height": None if error else height, "format": "JPEG",
            "phash": None, "status": "error" if error else "ok", "error": "truncated" if error else None,
            "error_detail": "image file is truncated (54 bytes not processed)" if error else None,
        })  # fmt: skip
        if error:
            out["gate"].append(_gate(image_id, False, 0.0, 0, "skip", "ingest_error"))
            continue
        kind = draws[3]
        if kind < 0.30:
            out["gate"].append(_gate(image_id, True, 0.8 + 0.2 * draws[4], 1 + int(draws[5] * 6), "ocr", None))
            n_lines = 1 + min(7, int(-np.log(1 - draws[6]) / np.log(2)))  # 1 + geometric (p = 1/2): mean 2
            y = 40.0 + draws[7] * height * 0.5
            for line_no in range(n_lines):
                text = texts.novel_line(f"{_image_index(path)}.{line_no}") if new and line_no == 0 else texts.line(int(line_ranks[line_no]))
                x0 = round(10.0 + draws[8] * width * 0.3, 1)
                x1 = round(min(width - 1.0, x0 + 18.0 * len(text) * (0.6 + draws[9])), 1)
                out["ocr"].append({
                    "schema_version": SCHEMA_VERSION, "image_id": image_id, "line_no": line_no, "region_id": None,
                    "text": text, "confidence": round(0.6 + 0.4 * float(box_draws[line_no % 4, 0]), 5),
                    "language": "en" if draws[10] < 0.7 else None,
                    "language_confidence": round(0.3 + 0.6 * float(draws[11]), 4) if draws[10] < 0.7 else None,
                    "bbox": [x0, round(y, 1), x1, round(y + 42.0, 1)], "source": VERSIONS["ocr"],
                })  # fmt: skip
                y += 55.0
        elif kind < 0.38:
            out["gate"].append(_gate(image_id, True, 0.3 + 0.5 * draws[4], 1, "skip", "below_threshold"))
        else:
            out["gate"].append(_gate(image_id, False, 0.0, 0, "skip", "no_text_regions"))
        for region_id in range(int(draws[9] * 5)):  # 0-4 regions, mean 2
            bx = box_draws[region_id]
            x0, y0 = float(bx[0]) * width * 0.7, float(bx[1]) * height * 0.7
            x1, y1 = min(width, x0 + (0.1 + bx[2] * 0.5) * width), min(height, y0 + (0.1 + bx[3] * 0.5) * height)
            names = texts.classes(class_rng, 3)
            top = round(0.35 + 0.6 * float(bx[2]), 6)
            labels = [{"label": n, "score": round(top * (1.0 - 0.3 * i), 6), "source": "detector"} for i, n in enumerate(names)]
            out["detect"].append({
                "schema_version": SCHEMA_VERSION, "image_id": image_id, "region_id": region_id,
                "bbox": [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)], "score": top, "labels": labels,
                "caption": names[0], "detector_label": names[0], "detector_version": VERSIONS["detect"],
            })  # fmt: skip
    out["regions"] = [dict(r) for r in out["detect"]]  # no ontology: the regions rule keeps the detector's names
    out["embed"] = embed_records(out["regions"], out["ocr"], texts)
    return out


def _gate(image_id: str, has_text: bool, score: float, regions: int, decision: str, reason: str | None) -> dict:
    return {"schema_version": SCHEMA_VERSION, "image_id": image_id, "has_text": has_text, "score": round(float(score), 6),
            "decision": decision, "skip_reason": reason, "text_regions": regions, "gate_version": VERSIONS["gate"]}  # fmt: skip


def embed_records(detect: list[dict], ocr: list[dict], texts: TextSource) -> list[dict]:
    """What the embed stage writes (shardlens/stages/embed.py): one record per distinct
    (kind, text), sorted, with its occurrences in file order."""
    found: dict[tuple[str, str], list[list]] = {}
    for region in detect:
        where = [region["image_id"], region["region_id"], None]
        found.setdefault(("caption", region["caption"]), []).append(where)
        for candidate in region["labels"][1:]:
            found.setdefault(("label", candidate["label"]), []).append(where)
    for line in ocr:
        text = " ".join(line["text"].split())
        if len(text) >= 2:
            found.setdefault(("ocr", text), []).append([line["image_id"], None, line["line_no"]])
    return [
        {"schema_version": SCHEMA_VERSION, "kind": kind, "text": text, "occurrences": found[(kind, text)],
         "model": VERSIONS["embed"], "dim": DIM, "vector": texts.vector(text)}
        for kind, text in sorted(found)
    ]  # fmt: skip


# per-image seconds of each stage's job (BENCHMARKS.md, 500-image shards): for the report's figure
JOB_SECONDS = {
    "shard_listing": (0.3, 0.0),
    "ingest": (0.2, 0.002),
    "gate": (0.4, 0.047),
    "ocr": (3.6, 0.1),
    "detect": (0.4, 0.03),
    "regions": (0.4, 0.0008),
    "embed": (0.5, 0.003),
}


def job_files(work: Path, stage: str, shard: str, summary: dict, mtime_ns: int) -> list[Path]:
    """The job's log (its closing JSON summary line) and benchmark TSV, as the job leaves them."""
    fixed, per_image = JOB_SECONDS[stage]
    seconds = round(fixed + per_image * summary["images"], 2)
    logfile, bench = work / "logs" / stage / f"{shard}.log", work / "benchmarks" / stage / f"{shard}.tsv"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    bench.parent.mkdir(parents=True, exist_ok=True)
    line = {"errors": 0, "skipped": 0, **summary, "seconds": seconds, "shard": shard, "stage": stage}
    logfile.write_text(json.dumps(line, sort_keys=True) + "\n")
    bench.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{seconds + 0.3:.4f}\t{time.strftime('%H:%M:%S', time.gmtime(seconds))}\t300.00\t900.00\t280.00\t290.00\t0.00\t0.10\t95.00\t{seconds:.2f}\n"
    )
    return [logfile, bench]


def write_shard(
    work: Path,
    shard: str,
    paths: list[str],
    texts: TextSource,
    base_ns: int,
    changed: set[str] = frozenset(),
    distinct: dict[str, set] | None = None,
    job_record: bool = True,
) -> dict[str, int]:
    """Write one shard's stage outputs, logs and benchmarks, with modification times in stage
    order from ``base_ns`` (1 ms apart), then (``job_record``) the shard's job record
    ``logs/jobs/{shard}.json`` as its shard_jobs job writes it; return records per stage. Every
    record is checked against its contract (the catalog's compiled check; jsonschema names the
    field of a miss). ``distinct`` collects the distinct texts per item group (OCR lines, region
    labels)."""
    records = shard_records(shard, paths, texts, changed)
    if distinct is not None:
        for r in records["embed"]:
            distinct["ocr" if r["kind"] == "ocr" else "region"].add(r["text"])
    counts = {}
    for k, stage in enumerate(STAGE_ORDER, start=1):
        kind = SHARD_STAGES[stage]
        ok = record_check(kind)
        for n, record in enumerate(records[stage], start=1):
            if not ok(record):
                validate_record(kind, record, where=f"generated {stage}/{shard}.jsonl record {n}")
        target = work / "cache" / stage / f"{shard}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(dumps(r) + "\n" for r in records[stage])
        counts[stage] = len(records[stage])
        images = (
            len(paths)
            if stage in ("ingest", "gate")
            else len({r["image_id"] for r in records[stage]})
            if stage != "embed"
            else len({o[0] for r in records[stage] for o in r["occurrences"]})
        )
        summary = {"images": images, "ok": images, "records": counts[stage]}
        stamp = base_ns + k * 1_000_000
        for path in [target, *job_files(work, stage, shard, summary, stamp)]:
            os.utime(path, ns=(stamp, stamp))
    if job_record:
        record = work / "logs" / "jobs" / f"{shard}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        logs = {stage: work / "logs" / stage / f"{shard}.log" for stage in STAGE_ORDER}
        write_shard_jobs(record, shard, logs, {stage: work / "benchmarks" / stage / f"{shard}.tsv" for stage in STAGE_ORDER})
        stamp = base_ns + (len(STAGE_ORDER) + 1) * 1_000_000
        os.utime(record, ns=(stamp, stamp))
    return counts


def generate(work: Path, n_images: int, size: int, texts: TextSource, extra_config: dict | None = None) -> dict:
    """The list file, the config (plus ``extra_config``'s sections), and every shard's listing
    and stage outputs."""
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    listing = make_listing(work, n_images)
    write_workdir_config(work, images, **{**(extra_config or {}), "listing": {"list_file": str(listing)}, "shards": {"size": size}})
    listed = list_images(images, list_file=listing)  # what the workflow's plan reads
    plan = plan_shards(listed, shard_count_for(len(listed), None, size))
    # one time for every shard, before anything Snakemake writes; after the scripts' own times,
    # or Snakemake's code trigger (an output older than its rule's script) would re-run the jobs
    base_ns = time.time_ns()
    totals: dict[str, int] = {stage: 0 for stage in STAGE_ORDER}
    distinct: dict[str, set] = {"ocr": set(), "region": set()}
    t0 = time.perf_counter()
    for i, shard in enumerate(plan.names):
        members = plan.shards[shard]
        text = listing_text(members)
        target = work / "cache" / "shards" / f"{shard}.tsv"
        write_listing(target, text)
        for path in [target, *job_files(work, "shard_listing", shard, {"images": len(members), "ok": len(members), "records": len(members)}, base_ns)]:
            os.utime(path, ns=(base_ns, base_ns))
        counts = write_shard(work, shard, [m.path for m in members], texts, base_ns, distinct=distinct)
        for stage, n in counts.items():
            totals[stage] += n
        if (i + 1) % max(1, len(plan.names) // 20) == 0 or i + 1 == len(plan.names):
            log(f"  generated {i + 1:,}/{len(plan.names):,} shards ({time.perf_counter() - t0:.0f} s)")
    return {"plan": plan, "records": totals, "seconds": time.perf_counter() - t0, "distinct": {k: len(v) for k, v in distinct.items()}}


# --------------------------------------------------------------------------------------------
# Running snakemake
# --------------------------------------------------------------------------------------------

# Runs the command under an optional address-space limit (inherited by every job) and writes the
# max RSS over it and every descendant it waited for (what GNU time -v reports) to a file.
RUSAGE = """import resource, subprocess, sys
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
rc = subprocess.call(sys.argv[3:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


@dataclass
class Run:
    wall: float = 0.0
    rc: int | None = None
    stopped: str = ""  # why the bench stopped it ('' when it ended on its own)
    max_rss_mb: float = 0.0
    planned: dict[str, int] = field(default_factory=dict)
    first_job_s: float | None = None
    failed_rule: str = ""  # the rule of the first job that failed
    failed_at: float = 0.0  # when Snakemake said so
    jobs: dict[str, dict] = field(default_factory=dict)  # jobid -> rule, start, end, reason
    tail: list[str] = field(default_factory=list)

    def finished(self) -> list[dict]:
        return [j for j in self.jobs.values() if j.get("end") is not None]


def run_snakemake(work: Path, timeout: float, *args: str, memory_limit_gb: float = 0) -> Run:
    """`snakemake --cores 2` (plus ``args``) in ``work``, watched line by line: the job stats, each
    job's start and end, the time until the first job starts. Stopped (with the whole process
    group) at ``timeout`` or when the job stats name a per-shard rule. ``memory_limit_gb``: the
    address space Snakemake and each of its jobs may take (0: no limit)."""
    rss_file = work / ".bench_maxrss"
    rss_file.unlink(missing_ok=True)
    limit = str(int(memory_limit_gb * 2**30))
    cmd = [PYTHON, "-c", RUSAGE, str(rss_file), limit, *snakemake_cmd(work, "--cores", "2", *args)]
    run = Run()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def stop(reason: str) -> None:
        """SIGTERM to the whole process group (Snakemake stops its jobs), SIGKILL 30 s later."""
        if run.stopped:
            return
        run.stopped = reason
        for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)

    def read() -> None:
        in_stats, rule, jobid = False, None, None
        with open(work / ".bench_snakemake.log", "w", encoding="utf-8") as saved:
            for line in proc.stdout:
                now = time.perf_counter() - t0
                saved.write(line)
                run.tail = (run.tail + [line.rstrip("\n")[:500]])[-60:]
                text = line.strip()
                if text == "Job stats:":
                    in_stats = True
                    continue
                if in_stats:
                    m = re.match(r"^(\w+)\s+(\d+)$", text)
                    if m:
                        run.planned[m.group(1)] = int(m.group(2))
                        if m.group(1) == "total":
                            in_stats = False
                            bad = sorted(set(run.planned) & PER_SHARD_RULES)
                            if bad:
                                threading.Thread(target=stop, args=(f"it planned per-shard jobs ({', '.join(f'{b} {run.planned[b]}' for b in bad)})",)).start()
                    continue
                m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", text)
                if m:
                    rule, jobid = m.group(1), None
                    run.first_job_s = run.first_job_s if run.first_job_s is not None else now
                    start = now
                    continue
                m = re.match(r"^jobid: (\d+)$", text)
                if m and rule:
                    jobid = m.group(1)
                    run.jobs[jobid] = {"rule": rule, "start": start, "end": None, "reason": ""}
                    rule = None  # one jobid per job block (an error block repeats it)
                    continue
                if text.startswith("reason:") and jobid in run.jobs:
                    run.jobs[jobid]["reason"] = text[len("reason:") :].strip()[:300]
                    continue
                m = re.match(r"^Error in rule (\w+):$", text)
                if m and not run.failed_rule:
                    run.failed_rule, run.failed_at = m.group(1), now
                m = re.match(r"^Finished jobid: (\d+)", text)
                if m and m.group(1) in run.jobs:
                    run.jobs[m.group(1)]["end"] = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(f"it ran past the timeout ({timeout:.0f} s)")
    run.wall = time.perf_counter() - t0
    reader.join(timeout=30)
    run.rc = proc.returncode
    try:
        run.max_rss_mb = int(rss_file.read_text()) / 1024
    except (OSError, ValueError):
        pass
    return run


def benchmark_rows(work: Path, rules: list[str]) -> dict[str, dict]:
    """Seconds and max RSS of each aggregate rule's last job (benchmarks/{rule}.tsv)."""
    out = {}
    for rule in rules:
        path = work / "benchmarks" / f"{rule}.tsv"
        try:
            header, values = path.read_text().splitlines()[:2]
        except (OSError, ValueError):
            continue
        row = dict(zip(header.split("\t"), values.split("\t")))
        out[rule] = {"s": float(row["s"]), "max_rss": float(row["max_rss"]) if row.get("max_rss", "-") not in ("-", "NA") else None}
    return out


def catalog_rows(work: Path) -> int | None:
    """Rows the catalog job loaded (its log's 'N rows from M shards loaded' line)."""
    try:
        m = re.search(r"(\d+) rows from (\d+) shards loaded", (work / "logs" / "catalog.log").read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------------


def change_shard(work: Path, plan, shard: str, n_changed: int, texts: TextSource) -> dict[str, int]:
    """Rewrite ``shard``'s stage outputs as its jobs would after ``n_changed`` images changed;
    their modification times are now, in stage order (newer than every aggregate output). Its job
    record is left as it was: the workflow's shard_jobs job writes it again."""
    paths = [m.path for m in plan.shards[shard]]
    changed = set(paths[:: max(1, len(paths) // max(1, n_changed))][:n_changed])
    time.sleep(0.05)
    return write_shard(work, shard, paths, texts, time.time_ns() - 10_000_000, changed=changed, job_record=False)


def describe(run: Run, work: Path | None = None) -> str:
    """The wall time, or why the run did not finish (with the failed job's last log line)."""
    if run.stopped:
        return f"stopped after {run.wall:.0f} s: {run.stopped}"
    if run.rc:
        why = ""
        if run.failed_rule and work is not None:
            try:
                lines = [l for l in (work / "logs" / f"{run.failed_rule}.log").read_text(errors="replace").splitlines() if l.strip()]
                why = f": {lines[-1][:200]}" if lines else ""
            except OSError:
                pass
        said = [line.strip() for line in run.tail if line.strip()]
        last = next((line for line in reversed(said) if "Error" in line), said[-1] if said else "")
        failed = f", rule {run.failed_rule} failed{why}" if run.failed_rule else f": {last[:200]}" if last else ""
        return f"failed (exit {run.rc}) after {run.wall:.0f} s{failed}"
    return f"{run.wall:.1f} s"


def jobs_text(run: Run) -> str:
    counts: dict[str, int] = {}
    for job in run.finished():
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    planned = {k: v for k, v in run.planned.items() if k != "total"}
    shown = ", ".join(f"{rule} {n}" for rule, n in (planned or counts).items())
    if not run.planned:
        return "nothing to be done" if run.rc == 0 and not run.stopped else "no job started"
    return f"{sum(counts.values())} done of {run.planned.get('total', sum(planned.values()))} planned ({shown})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_size = load_config()["shards"]["size"]
    parser.add_argument("--images", type=int, default=1_000_000, help="listed images (none exist on disk)")
    parser.add_argument("--size", type=int, default=default_size, help=f"shards.size (default: the config default, {default_size})")
    parser.add_argument("--changed-images", type=int, default=5, help="images of the changed shard that get new records")
    parser.add_argument("--work", type=Path, help="folder for the generated data (absent or empty; default: a new folder in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds each snakemake invocation may take")
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=0,
        help="GiB of address space Snakemake and each job may take (RLIMIT_AS; 0: none), so that a job that outgrows a shared machine fails instead of the machine",
    )
    parser.add_argument(
        "--extra-config",
        type=yaml.safe_load,
        default={},
        metavar="YAML",
        help="more sections of the workdir's config, e.g. '{labels: {pca_dims: 4}}' to get past a slow rule in a diagnostic run (named in the table)",
    )
    add_common_args(parser)
    args = parser.parse_args()
    if not isinstance(args.extra_config, dict) or {"images", "listing", "shards"} & set(args.extra_config):
        raise SystemExit("--extra-config: a YAML mapping of config sections other than images, listing and shards")

    if args.work:
        if args.work.exists() and any(args.work.iterdir()):
            raise SystemExit(f"--work {args.work}: not empty; give an absent or empty folder")
        args.work.mkdir(parents=True, exist_ok=True)
        work = args.work.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="shardlens-incremental-"))
    try:
        measure(args, work)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(args, work: Path) -> None:
    texts = TextSource()
    log(f"generating the cache of {args.images:,} images in {work} (shards.size {args.size})")
    gen = generate(work, args.images, args.size, texts, args.extra_config)
    plan, records = gen["plan"], gen["records"]
    cache_bytes = sum(p.stat().st_size for p in (work / "cache").rglob("*.jsonl"))
    distinct = gen["distinct"]
    TextSource.vector.cache_clear()  # ~0.5 GB of encoded vectors at a million images, not needed while Snakemake runs
    log(f"generated {len(plan.names):,} shards in {gen['seconds']:.0f} s: {records}, {cache_bytes / 1e9:.2f} GB, distinct texts {distinct}")

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    log(f"full build: snakemake --cores 2 (timeout {args.timeout:.0f} s)")
    full = run_snakemake(work, args.timeout, memory_limit_gb=args.memory_limit)
    full_bench = benchmark_rows(work, sorted({j["rule"] for j in full.finished()}))
    log(f"full build: {describe(full, work)}, peak RSS {full.max_rss_mb:.0f} MB, {jobs_text(full)}")
    rows = catalog_rows(work)
    second = noop = None
    changed_shard = plan.names[len(plan.names) // 2]
    if not full.stopped and full.rc and full.failed_rule:
        log(f"the full build failed in rule {full.failed_rule}: the second invocation runs anyway, for the other rules' figures")
    if not full.stopped and (full.rc == 0 or full.failed_rule):
        log("snakemake -n with nothing changed")
        noop = run_snakemake(work, args.timeout, "-n", memory_limit_gb=args.memory_limit)
        log(f"  {describe(noop)}: {jobs_text(noop)}")
        counts = change_shard(work, plan, changed_shard, args.changed_images, texts)
        log(f"changed shard {changed_shard}: {args.changed_images} images changed, records {counts}")
        gen["load_second"] = wait_for_quiet(args.max_load, args.max_wait)
        log(f"second invocation: snakemake --cores 2 (timeout {args.timeout:.0f} s)")
        second = run_snakemake(work, args.timeout, memory_limit_gb=args.memory_limit)
        gen["load_after_second"] = load_average()
        log(f"second invocation: {describe(second, work)}, peak RSS {second.max_rss_mb:.0f} MB, {jobs_text(second)}")
    else:
        log("the full build did not finish: no second invocation. Its last lines:\n" + "\n".join(full.tail[-25:]))
    second_bench = benchmark_rows(work, sorted({j["rule"] for j in second.finished()})) if second else {}
    report(args, work, load_before, plan, records, cache_bytes, distinct, gen, full, full_bench, rows, noop, second, second_bench, changed_shard)
    if second and (second.stopped or second.rc):
        log("the second invocation did not finish. Its last lines:\n" + "\n".join(second.tail[-25:]))


def report(args, work, load_before, plan, records, cache_bytes, distinct, gen, full, full_bench, rows, noop, second, second_bench, changed_shard) -> None:
    def mb(value) -> str:
        return f"{value:,.0f} MB" if value else "–"

    lines = [
        f"A synthetic cache of {args.images:,} listed images (no image files; a generated list file), `shards.size: {args.size}` → "
        f"{plan.count:,} shards; every shard's stage outputs, logs, benchmarks and job record written by the bench (records "
        "checked against the contracts), so Snakemake runs only the aggregate jobs. Full build: `snakemake --cores 2` in the "
        f"fresh workdir. Second invocation: the same command after shard {changed_shard}'s six cache files were rewritten as its "
        f"stage jobs would after {args.changed_images} of its images changed (new image ids, OCR lines, boxes, label candidates): "
        "planning, the shard's job record and every aggregate job, no stage job (a real change would add that shard's seven "
        f"stage jobs, ≈ 91 s, which the target leaves out). Target: second invocation ≤ {TARGET_S:.0f} s on 2 cores."
        + (f" **Config changed for this run:** `{json.dumps(args.extra_config)}` (not the defaults)." if args.extra_config else "")
        + (f" Address space of Snakemake and each job limited to {args.memory_limit:g} GiB (`--memory-limit`)." if args.memory_limit else ""),
        "",
        "| what | figure |",
        "|---|---|",
        f"| images / shards | {args.images:,} / {plan.count:,} ({len(plan.names):,} with images) |",
        f"| records | ingest {records['ingest']:,}, gate {records['gate']:,}, OCR lines {records['ocr']:,}, regions {records['detect']:,}, embeddings {records['embed']:,} |",
        f"| distinct texts (what the cluster rule clusters) | OCR {distinct['ocr']:,}, region labels {distinct['region']:,} |",
        f"| cache (JSONL) | {cache_bytes / 1e9:.2f} GB ({cache_bytes / args.images / 1024:.1f} KiB per image); generated in {gen['seconds']:.0f} s (not part of any figure) |",
        f"| catalog rows | {rows:,} |" if rows else "| catalog rows | – (the catalog job did not finish) |",
        f"| full build: wall time | {describe(full, work)}; {jobs_text(full)} |",
        f"| full build: peak memory (max RSS, snakemake and its children) | {mb(full.max_rss_mb)} |",
    ]
    if noop:
        lines.append(f"| `snakemake -n` with nothing changed | {describe(noop)}; {jobs_text(noop)} |")
    if second:
        met = not second.stopped and not second.rc and second.wall <= TARGET_S
        verdict = f"**not measured**: {second.failed_rule or 'a job'} did not finish" if second.stopped or second.rc else f"**{'met' if met else 'missed'}**"
        lines += [
            f"| **second invocation: wall time** | **{describe(second, work)}**; {jobs_text(second)} |",
            f"| second invocation: until its first job starts (planning) | {second.first_job_s:.1f} s |"
            if second.first_job_s is not None
            else "| second invocation: until its first job starts | – |",
            f"| second invocation: peak memory | {mb(second.max_rss_mb)} |",
            f"| load average (1, 5, 15 min) around the second invocation | before {fmt_load(gen['load_second'])}; after {fmt_load(gen['load_after_second'])} |",
            f"| target ≤ {TARGET_S:.0f} s | {verdict} |",
        ]
    if full.failed_rule and second:
        lines += [
            "",
            f"The full build's {full.failed_rule} job failed; the second invocation ran anyway and tried it again, so its "
            "wall time is not the target's figure: the per-rule times below are what it measured.",
        ]
    lines += [
        "",
        "Per rule (job wall time from `benchmarks/{rule}.tsv`, max RSS from the same; started = seconds after the invocation began, as Snakemake logged it):",
        "",
    ]
    lines += [
        "| rule | full build: job s | full build: max RSS | second: job s | second: max RSS | second: started at | second: why it ran |",
        "|---|---|---|---|---|---|---|",
    ]

    def cells(run: Run | None, bench: dict, rule: str) -> str:
        """job s | max RSS of the rule's job in ``run``; a job that did not end says how long it ran."""
        job = next((j for j in (run.jobs.values() if run else ()) if j["rule"] == rule), None)
        if job is None:
            return "– | –"
        if job["end"] is None:
            failed = run.failed_rule == rule
            return f"did not finish ({'failed' if failed else 'stopped'} after {(run.failed_at if failed else run.wall) - job['start']:.0f} s) | –"
        return f"{bench.get(rule, {}).get('s', 0):.1f} | {mb(bench.get(rule, {}).get('max_rss'))}"

    rules = list(dict.fromkeys(j["rule"] for j in sorted([*full.jobs.values(), *(second.jobs.values() if second else ())], key=lambda j: j["start"])))
    for rule in rules:
        if rule == "all":
            continue
        sj = next((j for j in (second.jobs.values() if second else ()) if j["rule"] == rule), None)
        lines.append(
            f"| {rule} | {cells(full, full_bench, rule)} | {cells(second, second_bench, rule)} | "
            + (f"{sj['start']:.1f} | {sj['reason'][:80]} |" if sj else "– | did not run |")
        )
    if second:
        in_jobs = sum(second_bench.get(j["rule"], {}).get("s", 0) for j in second.finished() if j["rule"] != "all")
        last = max((j["end"] for j in second.finished() if j["rule"] != "all"), default=0.0)
        lines += [
            "",
            f"Second invocation: {second.wall:.1f} s = {second.first_job_s or 0:.1f} s until the first job starts (planning), "
            f"{last - (second.first_job_s or 0):.1f} s from the first job's start to the last one's end (Σ {in_jobs:.1f} s of job wall time; "
            f"export and ingest_report may run side by side), {second.wall - last:.1f} s after it. Snakemake samples a job's memory "
            "now and then: a job shorter than a second may show only its start.",
        ]
    emit(
        f"Incremental re-run at scale: {args.images:,} images, one shard changed" + (" (config changed)" if args.extra_config else ""),
        command_line(),
        load_before,
        lines,
        append=args.append,
    )


if __name__ == "__main__":
    main()
