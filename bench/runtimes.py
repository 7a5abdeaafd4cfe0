"""onnxruntime vs PyTorch on CPU: the embedding model (all-MiniLM-L6-v2) in both, the detector
(NanoDet) on onnxruntime only: latency per batch, peak memory, agreement of the outputs.

The MiniLM ONNX file is the one the default embed backend uses, exported at set-up by
`shardlens export-embedder` (`shardlens/models/minilm_onnx.py`: `torch.onnx.export`, the
TorchScript exporter; graph = BERT + mean pooling + L2 normalisation, the same as the
sentence-transformers model).

Each runtime runs in its own subprocess (so ru_maxrss is that runtime's peak alone), threads=2,
on the same texts: PyTorch through `SentenceTransformer.encode` (what the embed stage calls),
onnxruntime through the `tokenizers` tokenizer of the same model folder + `InferenceSession.run`
(no torch imported). Every batch is timed after 2 warm-up batches; medians are reported.

    python bench/runtimes.py [--texts 512] [--append]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, REPO, add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402

EMBED_WORKER = r"""
import json, os, resource, sys, time
import numpy as np
os.environ["HF_HUB_OFFLINE"] = "1"
runtime, model_dir, onnx_path, texts_path, batch, out = sys.argv[1:7]
batch = int(batch)
texts = json.loads(open(texts_path).read())
t0 = time.perf_counter()
if runtime == "torch":
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(2)
    st = SentenceTransformer(model_dir, device="cpu")
    def encode(chunk):
        return st.encode(chunk, batch_size=len(chunk), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
else:
    import onnxruntime as ort
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=256)  # the model's max_seq_length
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
    def encode(chunk):
        enc = tok.encode_batch(chunk)
        feed = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        return session.run(None, feed)[0]
load_s = time.perf_counter() - t0
batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
for b in batches[:2]:
    encode(b)
times, vectors = [], []
for b in batches:
    t = time.perf_counter()
    vectors.append(np.asarray(encode(b), dtype=np.float32))
    times.append(time.perf_counter() - t)
np.save(out, np.concatenate(vectors))
times.sort()
print(json.dumps({"load_s": load_s, "median_ms": 1000 * times[len(times) // 2], "batches": len(times),
                  "texts_per_s": len(texts) / sum(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

DETECT_WORKER = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
batch, n = int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
from shardlens.models.nanodet import NanoDetDetector
from shardlens.options import DetectOptions
from skimage import data
det = NanoDetDetector(DetectOptions.from_values(), threads=2)
load_s = time.perf_counter() - t0
photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
images = [np.ascontiguousarray(photos[i % len(photos)][:, ::(1 if i < len(photos) else -1)]) for i in range(n)]
batches = [images[i : i + batch] for i in range(0, n, batch)]
det.detect_batch(batches[0])
times, boxes = [], 0
for b in batches:
    t = time.perf_counter()
    out = det.detect_batch(b)
    times.append(time.perf_counter() - t)
    boxes += sum(len(o) for o in out)
times.sort()
print(json.dumps({"load_s": load_s, "median_ms": 1000 * times[len(times) // 2], "images_per_s": n / sum(times),
                  "boxes": boxes, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_texts(n: int) -> list[str]:
    """Short captions, labels and OCR-like lines, like the embed stage sees (deterministic)."""
    import numpy as np

    rng = np.random.default_rng(3)
    nouns = "person car cat dog cup bottle chair table sign street door window tree bus truck bicycle phone book clock lamp".split()
    adjs = "red blue green old new big small open closed parked wooden white".split()
    words = "open hours exit sale today parking station coffee bakery market hotel pharmacy bank museum library school north main street".split()
    texts = []
    for i in range(n):
        r = rng.random()
        if r < 0.4:
            texts.append(str(rng.choice(nouns)))
        elif r < 0.7:
            texts.append(f"{rng.choice(adjs)} {rng.choice(nouns)}")
        else:
            k = int(rng.integers(2, 9))
            texts.append(" ".join(rng.choice(words, size=k)) + f" {rng.integers(0, 1000)}")
    return texts


def run_worker(code: str, *argv: str) -> dict:
    proc = subprocess.run([PYTHON, "-c", code, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="embedding batch sizes (64 = embed.batch_size)")
    parser.add_argument("--detect-batch", type=int, default=8, help="detect.batch_size")
    parser.add_argument("--detect-images", type=int, default=64)
    add_common_args(parser)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from shardlens.models.text_embedder import default_model_dir

    model_dir = str(default_model_dir())
    from shardlens.models.minilm_onnx import require_onnx_model

    tmp = Path(tempfile.mkdtemp(prefix="shardlens-runtimes-"))
    onnx_path = require_onnx_model()
    texts = make_texts(args.texts)
    texts_path = tmp / "texts.json"
    texts_path.write_text(json.dumps(texts))

    import numpy as np

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    rows = []
    for batch in args.batches:
        n = args.texts if batch > 1 else min(args.texts, 128)
        sub = tmp / f"texts{n}.json"
        sub.write_text(json.dumps(texts[:n]))
        result = {}
        for runtime in ("torch", "onnxruntime"):
            log(f"embedding, batch {batch}, {runtime}")
            result[runtime] = run_worker(EMBED_WORKER, runtime, model_dir, str(onnx_path), str(sub), str(batch), str(tmp / f"{runtime}{batch}.npy"))
            log(f"  {result[runtime]}")
        a, b = np.load(tmp / f"torch{batch}.npy"), np.load(tmp / f"onnxruntime{batch}.npy")
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        rows.append((batch, n, result, float(cos.min()), float(cos.mean())))
    log(f"detector: NanoDet on onnxruntime, batch {args.detect_batch}")
    det = run_worker(DETECT_WORKER, str(REPO), str(args.detect_batch), str(args.detect_images))

    lines = [
        f"all-MiniLM-L6-v2, {args.texts} generated short texts (captions, labels, sign-like lines), threads=2. "
        f"ONNX: the set-up export (`shardlens export-embedder`, opset 17, {onnx_path.stat().st_size / 1e6:.0f} MB fp32). "
        "Peak RSS = the subprocess's ru_maxrss (imports + model + run).",
        "",
        "| model | runtime | batch | median latency / batch (ms) | texts/s | import + load (s) | peak RSS (MB) | cosine vs PyTorch (min / mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, n, result, cmin, cmean in rows:
        for runtime in ("torch", "onnxruntime"):
            r = result[runtime]
            agree = "reference" if runtime == "torch" else f"{cmin:.6f} / {cmean:.6f}" + (" ✓" if cmin >= 0.999 else " ✗ (< 0.999)")
            name = "PyTorch (sentence-transformers)" if runtime == "torch" else "onnxruntime (+ tokenizers)"
            lines.append(
                f"| MiniLM-L6-v2 | {name} | {batch} | {r['median_ms']:.1f} | {r['texts_per_s']:.0f} | {r['load_s']:.1f} | {r['peak_rss_mb']:.0f} | {agree} |"
            )
        speed = result["torch"]["median_ms"] / result["onnxruntime"]["median_ms"]
        lines.append(
            f"| | **onnxruntime / PyTorch** | {batch} | **{speed:.2f}× faster** | | | **{result['onnxruntime']['peak_rss_mb'] / result['torch']['peak_rss_mb']:.2f}× the memory** | |"
        )
    lines.append(
        f"| NanoDet-g 416 | onnxruntime | {args.detect_batch} images | {det['median_ms']:.0f} | {det['images_per_s']:.1f} images/s | {det['load_s']:.1f} | {det['peak_rss_mb']:.0f} | no PyTorch model to compare |"
    )
    notes = [
        "NanoDet ships only as ONNX here (`shardlens/models/weights/nanodet-g/`, converted from the TF.js release, see "
        "DEPENDENCIES.md): there are no PyTorch weights to run, so the detector has onnxruntime figures only "
        "(photos from scikit-image, letterboxed to 416, GFL decode + NMS included in the latency).",
    ]
    emit("Runtimes: onnxruntime vs PyTorch on CPU", command_line(), load_before, lines, notes, append=args.append)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
