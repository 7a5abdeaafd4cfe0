"""Text accuracy measures for OCR: character error rate on normalised strings."""

from __future__ import annotations

import unicodedata


def normalise(text: str) -> str:
    """NFC, whitespace collapsed to single spaces, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(predicted: str, truth: str) -> float:
    """Character error rate: edit distance over the length of the normalised truth."""
    p, t = normalise(predicted), normalise(truth)
    if not t:
        return 0.0 if not p else 1.0
    return edit_distance(p, t) / len(t)
