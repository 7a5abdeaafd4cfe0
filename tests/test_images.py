"""Listing images and ingesting files, good and bad: each gets a defined outcome."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from shardlens.images.listing import ListingError, list_images
from shardlens.options import IngestOptions
from shardlens.stages.ingest import ingest_file


def write_jpeg(path, size=(64, 48), **kw):
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path, "JPEG", **kw)


def test_listing_is_recursive_case_insensitive_and_sorted(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_jpeg(tmp_path / "z.JPG")
    write_jpeg(tmp_path / "a" / "b" / "x.jpeg")
    (tmp_path / "notes.txt").write_text("not listed")
    paths = [e.path for e in list_images(tmp_path)]
    assert paths == ["a/b/x.jpeg", "z.JPG"]


def test_listing_survives_a_symlink_loop(tmp_path):
    (tmp_path / "d").mkdir()
    write_jpeg(tmp_path / "d" / "x.jpg")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    assert [e.path for e in list_images(tmp_path, follow_symlinks=True)] == ["d/x.jpg"]


def test_list_file_paths_cannot_escape_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_jpeg(root / "in.jpg")
    good = tmp_path / "good.txt"
    good.write_text("# comment\nin.jpg\n\nmissing.jpg\n")
    entries = list_images(root, list_file=good)
    assert [(e.path, e.size > 0) for e in entries] == [("in.jpg", True), ("missing.jpg", False)]
    bad = tmp_path / "bad.txt"
    bad.write_text("in.jpg\n../secret.jpg\n")
    with pytest.raises(ListingError, match=r"bad.txt line 2: path '../secret.jpg' is outside the images root"):
        list_images(root, list_file=bad)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ListingError, match="is not a folder"):
        list_images(tmp_path / "nope")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty_file"),
        ("text.jpg", b"just some text, not an image\n", "not_an_image"),
        ("photo.heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "unsupported_format"),
    ],
)
def test_bad_files_get_a_reason(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    record = ingest_file(tmp_path, name, IngestOptions.from_values())
    assert record["status"] == "error" and record["error"] == reason
    assert record["error_detail"]


def test_truncated_jpeg_and_png(tmp_path):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    for name in ("cut.jpg", "cut.png"):
        record = ingest_file(tmp_path, name, IngestOptions.from_values())
        assert (record["status"], record["error"]) == ("error", "truncated"), record
        assert record["image_id"] is not None  # the bytes were read and hashed


def test_missing_file_and_limits(tmp_path):
    assert ingest_file(tmp_path, "gone.jpg", IngestOptions.from_values())["error"] == "not_found"
    write_jpeg(tmp_path / "big.jpg", size=(400, 300))
    assert ingest_file(tmp_path, "big.jpg", IngestOptions.from_values({"limits": {"max_pixels": 100_000}}))["error"] == "too_many_pixels"
    assert ingest_file(tmp_path, "big.jpg", IngestOptions.from_values({"limits": {"max_bytes": 10}}))["error"] == "too_large_bytes"


def test_exif_orientation_swaps_width_and_height(tmp_path):
    image = Image.fromarray(np.zeros((100, 300, 3), np.uint8))  # 300 wide, 100 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    record = ingest_file(tmp_path, "rot.jpg", IngestOptions.from_values())
    assert (record["status"], record["width"], record["height"], record["format"]) == ("ok", 100, 300, "JPEG")


def test_same_bytes_same_image_id(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    assert ingest_file(tmp_path, "a.jpg", IngestOptions.from_values())["image_id"] == ingest_file(tmp_path, "b.jpg", IngestOptions.from_values())["image_id"]
