"""The text gate: an image's score never depends on the batch it was scored in."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shardlens.models.text_gate import TextGate
from shardlens.options import GateOptions
from shardlens.stages.gate import decide


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2) if gray.ndim == 2 else gray[:, :, :3]


@pytest.fixture(scope="module")
def varied_images() -> dict[str, np.ndarray]:
    """Real images of many sizes: photos, a scanned page, a tight crop of one text line, small ones."""
    from skimage import data

    page = _rgb(data.page())
    text = _rgb(data.text())
    return {
        "coffee": data.coffee(),
        "astronaut": data.astronaut(),
        "page": page,
        "banner": page[30:75, 20:330].copy(),  # one printed line, cropped tight
        "text_photo": text,
        "small_text": text[::4, ::4].copy(),
        "brick": _rgb(data.brick()),
        "tiny": data.chelsea()[::8, ::8].copy(),
    }


def test_gate_scores_do_not_depend_on_the_batch(varied_images):
    gate = TextGate(GateOptions.from_values(), threads=1)
    names = list(varied_images)
    alone = {name: gate.score_batch([varied_images[name]])[0] for name in names}
    orders = [names, names[::-1], [names[i] for i in (3, 0, 5, 1, 7, 2, 6, 4)]]
    orders += [list(pair) for pair in itertools.combinations(["banner", "coffee", "small_text", "page"], 2)]
    for order in orders:
        batch = gate.score_batch([varied_images[n] for n in order])
        for name, result in zip(order, batch):
            assert abs(result.score - alone[name].score) <= 1e-5, (name, order)
            assert result.regions == alone[name].regions, (name, order)
            assert decide(result, 0.8) == decide(alone[name], 0.8), (name, order)
    assert alone["page"].regions > 0 and alone["banner"].regions > 0  # real text is seen
