"""The draft's guardrails: warm-ups without DeprecationWarning, a clean lint, a consistent install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

WARMUP = """
import numpy as np
from shardlens.models.text_gate import TextGate
from shardlens.models.ocr_engines import make_ocr_engine
from shardlens.models.language import LanguageGuesser
from shardlens.options import GateOptions, LanguageOptions, OCROptions
gate = TextGate(GateOptions.from_values(), threads=1)
print("gate", gate.score_batch([np.full((64, 64, 3), 255, np.uint8)])[0].regions)
engine = make_ocr_engine(OCROptions.from_values({"engine": "rapidocr"}), threads=1)
engine.warmup()
print("ocr", engine.source)
print("lang", LanguageGuesser(LanguageOptions.from_values()).guess("Straße gesperrt für Fußgänger").language)
"""


def test_gate_and_ocr_warmups_raise_no_deprecation_warning():
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", WARMUP], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ocr rapidocr-3.10.0:PP-OCRv6_rec_small@" in proc.stdout
    assert "lang de" in proc.stdout


@pytest.mark.slow
def test_snakemake_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-n"], capture_output=True, text=True, cwd=REPO, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out[-3000:]


def test_snakefmt_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pip_check_is_clean():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
