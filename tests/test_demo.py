"""Tests for the demo image collection (shardlens.demo). No OCR here: that is slow
and lives in the integration tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from shardlens.demo import generate, sources, tables

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
CATEGORIES = {"photo", "text", "notext"}
RECORD_KEYS = {
    "category",
    "lines",
    "clean",
    "rotation",
    "language",
    "objects",
    "has_text",
    "source",
}
FOLDERS = {"photo": "photos", "text": "text", "notext": "notext"}

# (width, height) of a few images whose size is fixed by their source.
KNOWN_SIZES = {
    "photos/astronaut.png": (512, 512),
    "photos/camera.png": (512, 512),
    "photos/chelsea.jpg": (451, 300),
    "photos/coffee.jpg": (600, 400),
    "photos/motorcycle_left.jpg": (741, 500),
    "photos/rocket.JPG": (640, 427),
    "photos/page.png": (384, 191),
    "photos/grace_hopper.jpg": (512, 600),
    "photos/china.jpg": (640, 427),
    "photos/flower.jpg": (640, 427),
    "notext/tiny_64.png": (64, 64),
}


def _digests(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(root.rglob("*")) if path.is_file()}


def _image_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "nested" / "out"  # must be created
    ground_truth = generate.generate_demo(out)
    return out, ground_truth


def test_output_is_byte_identical_across_runs(generated, tmp_path):
    first, _ = generated
    generate.generate_demo(tmp_path)
    assert _digests(first) == _digests(tmp_path)


def test_rerun_into_same_directory_overwrites_cleanly(tmp_path):
    generate.generate_demo(tmp_path)
    before = _digests(tmp_path)
    generate.generate_demo(str(tmp_path))  # str paths are accepted too
    assert _digests(tmp_path) == before  # no temp files left, same bytes


def test_image_count(generated):
    out, ground_truth = generated
    assert 35 <= len(ground_truth) <= 45
    assert len(_image_files(out)) == len(ground_truth)


def test_ground_truth_matches_files(generated):
    out, ground_truth = generated
    assert set(ground_truth) == _image_files(out)
    for relative in ground_truth:
        assert (out / relative).is_file(), relative
        assert relative.isascii() and " " not in relative, relative


def test_ground_truth_json_on_disk_equals_return_value(generated):
    out, ground_truth = generated
    text = (out / "ground_truth.json").read_text(encoding="utf-8")
    assert json.loads(text) == ground_truth
    assert text == json.dumps(ground_truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_records_are_well_formed(generated):
    _, ground_truth = generated
    for relative, record in ground_truth.items():
        assert set(record) == RECORD_KEYS, relative
        assert record["category"] in CATEGORIES
        assert relative.split("/")[0] == FOLDERS[record["category"]], relative
        assert isinstance(record["lines"], list)
        assert isinstance(record["objects"], list)
        assert record["rotation"] in (0, 15, 90, 180)
        assert record["language"] is None or len(record["language"]) == 2
        if record["category"] == "text":
            assert record["has_text"] and record["lines"], relative
            assert record["language"] is not None, relative
        else:
            assert record["lines"] == [] and not record["clean"], relative
        if record["category"] == "notext":
            assert not record["has_text"], relative
        if record["clean"]:
            assert record["rotation"] == 0, relative


def test_every_category_and_kind_is_present(generated):
    _, gt = generated
    assert {record["category"] for record in gt.values()} == CATEGORIES
    text = {path: record for path, record in gt.items() if record["category"] == "text"}
    assert sum(record["clean"] for record in text.values()) >= 5
    assert {0, 15, 90, 180} <= {record["rotation"] for record in text.values()}
    assert {"fr", "de", "es", "pt", "pl"} <= {record["language"] for record in text.values()}
    assert gt["photos/page.png"]["has_text"]
    assert gt["photos/chelsea.jpg"]["objects"] == ["cat"]
    assert "person" in gt["photos/astronaut.png"]["objects"]


def test_mixed_formats_and_layout(generated):
    _, gt = generated
    suffixes = [Path(path).suffix for path in gt]
    assert ".webp" in suffixes
    assert any(suffix != suffix.lower() for suffix in suffixes)  # e.g. .JPG
    assert {".jpg", ".png"} <= set(suffixes)
    assert any(path.count("/") >= 3 for path in gt)  # a sub-sub-folder


def test_images_open_at_expected_sizes(generated):
    out, gt = generated
    for relative in gt:
        with Image.open(out / relative) as img:
            img.load()
            assert img.mode in ("RGB", "L"), relative
            assert 64 <= min(img.size) and max(img.size) <= 2000, relative
            if relative in KNOWN_SIZES:
                assert img.size == KNOWN_SIZES[relative], relative
    for spec in tables.NOTEXT_IMAGES:
        with Image.open(out / spec["path"]) as img:
            assert img.size == tuple(spec["size"]), spec["path"]
    for spec in tables.TEXT_IMAGES:
        with Image.open(out / spec["path"]) as img:
            width, height = img.size
        rotation = spec.get("rotation", 0)
        if rotation == 90:
            width, height = height, width
        expected = spec.get("width", 800)  # signs are 800x600
        if rotation == 15:
            assert width > expected, spec["path"]  # expanded by the tilt
        else:
            assert width == expected, spec["path"]


def test_images_carry_no_metadata(generated):
    out, gt = generated
    for relative in gt:
        with Image.open(out / relative) as img:
            found = set(img.info) & {"exif", "icc_profile", "comment", "xmp", "Comment"}
        assert not found, (relative, found)


def test_credits_name_sources_and_authors(generated):
    out, _ = generated
    credits = (out / "CREDITS.md").read_text(encoding="utf-8")
    needles = (
        "danielbuechele",
        "vultilion",
        "Robert Layton",
        "creativecommons.org/licenses/by/2.0",
        "china.jpg",
        "flower.jpg",
        "grace_hopper.jpg",
        "scikit-image",
        "matplotlib",
        "DejaVu",
    )
    for needle in needles:
        assert needle in credits, needle


def test_sources_are_bundled_files():
    for name in tables.SOURCE_FILES:
        assert sources.source_path(name).is_file(), name
