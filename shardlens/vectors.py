"""The exact, compact vector encoding of embedding records: base64 of little-endian float32."""

from __future__ import annotations

import base64

import numpy as np


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str, dim: int | None = None) -> np.ndarray:
    vector = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if dim is not None and vector.shape[0] != dim:
        raise ValueError(f"vector has {vector.shape[0]} values, expected {dim}")
    return vector
