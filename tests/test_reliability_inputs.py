"""Reliability of ingest on hostile inputs, without Snakemake: every file of a generated corpus
gets its defined outcome, limits come from the config, a hanging or crashing decoder costs one
file, paths cannot leave the images root, and the review import never opens a path from a CSV.

The same corpus through the real workflow (and into SQLite) is in test_reliability_workflow.py.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageFile

from shardlens.images.decoding import ImageError, Limits, open_image, read_bytes
from shardlens.images.listing import ListingError, list_images
from shardlens.options import IngestOptions
from shardlens.stages import ingest
from shardlens.stages.ingest import IsolatedIngest, ingest_file

from badinputs import CORPUS_LIMITS, UNLISTED, SmallDisk, can_deny_reads, ingest_corpus_unprivileged, make_corpus, png_bomb, tall_small_jpeg

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "images"
    return root, make_corpus(root)


def test_every_corpus_file_gets_its_outcome(corpus, tmp_path):
    root, cases = corpus
    records = {r["path"]: r for r in ingest_corpus_unprivileged(root, tmp_path, CORPUS_LIMITS)}
    assert sorted(records) == [c.path for c in cases]  # every file listed, one record each
    for case in cases:
        r = records[case.path]
        got = (r["status"], r["error"])
        assert got == (case.status, case.reason), f"{case.path!r} ({case.what}): {got} {r['error_detail']}"
        if case.status == "ok":
            assert (r["width"], r["height"], r["format"]) == (*case.size, case.format), case.path
            assert r["image_id"] and r["error_detail"] is None
        else:
            assert r["error_detail"], case.path
            assert str(root) not in r["error_detail"]  # records do not depend on where images live
        if case.duplicate_of:
            assert r["image_id"] == records[case.duplicate_of]["image_id"]
    # read but undecodable files still carry their content hash; unreadable ones do not
    assert records["errors/cut.jpg"]["image_id"] and records["errors/badcrc.png"]["image_id"]
    for unread in ("links/outside.jpg", "links/loop.jpg", "odd/pipe.jpg"):
        assert records[unread]["image_id"] is None and records[unread]["bytes"] is None
    if can_deny_reads():
        assert records["errors/secret.jpg"]["image_id"] is None


def test_the_walk_skips_links_by_default_and_says_so(corpus):
    root, cases = corpus
    skipped: list[tuple[str, str]] = []
    listed = [e.path for e in list_images(root, skipped=skipped)]
    links = sorted(c.path for c in cases if c.path.startswith("links/"))
    assert sorted(set(c.path for c in cases) - set(listed)) == links
    # named like images (links/up is not), and the name that is not UTF-8, shown with \\x escapes
    assert skipped == sorted([(p, "symlink_not_followed") for p in links] + list(UNLISTED.values()))
    # followed, the folder loop (links/up -> ..) is walked once and the file loop is listed
    followed = [e.path for e in list_images(root, follow_symlinks=True)]
    assert sorted(followed) == [c.path for c in cases]


def test_permission_denied_code_path(tmp_path, monkeypatch):
    """The open failing with EACCES, without relying on file modes (root reads anything)."""
    from shardlens.images import decoding

    (tmp_path / "locked.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    real_open = os.open

    def deny(path, *args, **kwargs):
        if str(path).endswith("locked.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(decoding.os, "open", deny)
    record = ingest_file(tmp_path, "locked.jpg", IngestOptions.from_values())
    assert (record["status"], record["error"], record["image_id"]) == ("error", "permission_denied", None)
    assert record["error_detail"] == "locked.jpg: permission denied"


def test_pillow_bomb_guard_is_the_configured_limit():
    """open_image hands limits.max_pixels to Pillow's guard for the call, and restores it."""
    before = Image.MAX_IMAGE_PIXELS
    bomb = png_bomb(1000, 1000)  # 1 M pixels declared in ~100 bytes
    # over twice the limit: Pillow refuses while reading the header (its own text would quote
    # twice our limit); the detail names the declared size and limits.max_pixels
    with pytest.raises(ImageError) as refused:
        open_image(bomb, Limits.from_values({"max_pixels": 400_000}))
    assert refused.value.reason == "too_many_pixels"
    assert refused.value.detail == "1,000,000 pixels declared is over the limit of 400,000 pixels (limits.max_pixels)"
    # between the limit and twice it: Pillow's DecompressionBombWarning is an error here
    with pytest.raises(ImageError) as warned:
        open_image(bomb, Limits.from_values({"max_pixels": 600_000}))
    assert warned.value.reason == "too_many_pixels"
    assert warned.value.detail == "1,000,000 pixels declared is over the limit of 600,000 pixels (limits.max_pixels)"
    # under the limit the guard stays quiet (this header-only file then fails as truncated)
    with pytest.raises(ImageError) as fine:
        open_image(bomb, Limits.from_values({"max_pixels": 2_000_000}))
    assert fine.value.reason == "truncated"
    assert Image.MAX_IMAGE_PIXELS == before


def test_limits_keys_in_the_config_schema_are_limits_fields():
    """The ingest rule builds Limits(**config['limits']): every schema key must be a field with
    the same default."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    props = schema["properties"]["limits"]["properties"]
    defaults = Limits.from_values()
    for key, spec in props.items():
        assert hasattr(defaults, key), f"config limits.{key} is not a Limits field"
        assert getattr(defaults, key) == spec["default"], key
    assert Limits(**{k: spec["default"] for k, spec in props.items()}) == defaults


def test_read_bytes_never_blocks_on_a_named_pipe(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    started = time.monotonic()
    with pytest.raises(ImageError) as err:
        read_bytes(tmp_path / "pipe.png", Limits.from_values())
    assert err.value.reason == "io_error" and "named pipe" in err.value.detail
    assert time.monotonic() - started < 1


# --- a decoder that hangs or crashes costs one file ---------------------------------------------


class _StuckDecoder(ImageFile.ImageFile):
    """A registered 'format' whose decoder never returns (HANG) or kills its process (CRSH)."""

    format = "SHARDLENS_TEST"
    format_description = "test decoder"

    def _open(self):
        self._size = (8, 8)
        self._mode = "RGB"
        self.tile = []
        self.behaviour = self.fp.read(4)

    def load(self):
        if self.behaviour == b"HANG":
            time.sleep(3600)
        os.kill(os.getpid(), signal.SIGSEGV)


@pytest.fixture()
def stuck_decoder():
    Image.register_open(_StuckDecoder.format, _StuckDecoder, lambda prefix: prefix[:4] in (b"HANG", b"CRSH"))
    yield
    Image.OPEN.pop(_StuckDecoder.format, None)
    if _StuckDecoder.format in Image.ID:
        Image.ID.remove(_StuckDecoder.format)


def _ok_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(sys.platform != "linux", reason="the test decoder reaches the worker through fork")
def test_a_hanging_or_crashing_decoder_costs_one_file(tmp_path, stuck_decoder):
    (tmp_path / "hang.png").write_bytes(b"HANG" + b"\x00" * 60)
    (tmp_path / "crash.png").write_bytes(b"CRSH" + b"\x00" * 60)
    (tmp_path / "fine.png").write_bytes(_ok_png())
    started = time.monotonic()
    with IsolatedIngest(tmp_path, IngestOptions.from_values({"limits": {"decode_timeout_s": 0.5}})) as worker:
        hung = worker("hang.png")
        after_hang = worker("fine.png")
        crashed = worker("crash.png")
        after_crash = worker("fine.png")
        assert worker.restarts == 2
    assert time.monotonic() - started < 10
    assert (hung["status"], hung["error"]) == ("error", "decode_timeout")
    assert "longer than 0.5 s" in hung["error_detail"]
    assert hung["image_id"] and hung["bytes"] == 64  # read and hashed before the decoder hung
    assert (crashed["status"], crashed["error"]) == ("error", "corrupt")
    assert "crashed (signal 11)" in crashed["error_detail"]
    for record in (after_hang, after_crash):
        assert (record["status"], record["width"], record["height"]) == ("ok", 5, 4)


@pytest.mark.skipif(sys.platform != "linux", reason="the test decoder reaches the worker through fork")
def test_ingest_shard_goes_on_after_a_hang(tmp_path, stuck_decoder):
    (tmp_path / "a_hang.png").write_bytes(b"HANG" + b"\x00" * 60)
    (tmp_path / "b_fine.png").write_bytes(_ok_png())
    (tmp_path / "listing.tsv").write_text("path\tsize\tmtime_ns\na_hang.png\t64\t0\nb_fine.png\t1\t0\n")
    summary = ingest.run_shard(
        tmp_path / "listing.tsv", tmp_path, tmp_path / "out.jsonl", "0000", Limits.from_values({"decode_timeout_s": 0.5}), allow_outside_root=False
    )
    assert (summary["ok"], summary["errors"], summary["extra"]) == (1, 1, {"worker_restarts": 1})
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert '"decode_timeout"' in lines[0] and '"status":"ok"' in lines[1]


def test_worker_cost_in_the_common_case(tmp_path):
    """Decoding in the worker must stay cheap: measured against in-process decoding."""
    data = _ok_png()
    names = [f"img{i:03d}.png" for i in range(150)]
    for name in names:
        (tmp_path / name).write_bytes(data)
    started = time.perf_counter()
    for name in names:
        ingest_file(tmp_path, name, IngestOptions.from_values())
    in_process = time.perf_counter() - started
    started = time.perf_counter()
    with IsolatedIngest(tmp_path, IngestOptions.from_values({"limits": {"decode_timeout_s": 30}})) as worker:
        records = [worker(name) for name in names]
    isolated = time.perf_counter() - started
    assert all(r["status"] == "ok" for r in records)
    per_file_ms = (isolated - in_process) / len(names) * 1000
    print(f"\nworker overhead: {per_file_ms:.2f} ms/file ({in_process:.3f} s in-process, {isolated:.3f} s isolated, 150 files)")
    assert isolated < in_process + 0.05 * len(names)  # generous: < 50 ms per file even on a loaded machine


# --- paths cannot leave the images root ---------------------------------------------------------


def _jpeg(path: Path) -> None:
    Image.new("RGB", (4, 4)).save(path, "JPEG")


def test_list_file_cannot_escape_by_dotdot_absolute_path_or_symlink(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _jpeg(root / "in.jpg")
    _jpeg(tmp_path / "secret.jpg")
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    os.symlink(tmp_path, root / "outdir")

    def listing(*lines: str) -> Path:
        path = tmp_path / "list.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    # 1. '..'
    with pytest.raises(ListingError, match=r"line 2: path '\.\./secret\.jpg' is outside the images root.*allow_outside_root"):
        list_images(root, list_file=listing("in.jpg", "../secret.jpg"))
    # 2. an absolute path elsewhere
    with pytest.raises(ListingError, match=r"line 1: path '/.*/secret\.jpg' is outside the images root"):
        list_images(root, list_file=listing(str(tmp_path / "secret.jpg")))
    # an absolute path inside the root is fine, and becomes relative
    assert [e.path for e in list_images(root, list_file=listing(str(root / "in.jpg")))] == ["in.jpg"]
    # 3. a symlink out (the file itself, or a folder on the way): listed cheaply, refused by ingest
    entries = list_images(root, list_file=listing("link.jpg", "outdir/secret.jpg"))
    for entry in entries:
        record = ingest_file(root, entry.path, IngestOptions.from_values())
        assert (record["error"], record["image_id"], record["bytes"]) == ("permission_denied", None, None), record
        assert "outside the images root" in record["error_detail"] and "allow_outside_root" in record["error_detail"]
    # allowed in the config, all three work
    allowed = list_images(root, list_file=listing("../secret.jpg", str(tmp_path / "secret.jpg"), "link.jpg"), allow_outside_root=True)
    assert [e.path for e in allowed] == [str(tmp_path / "secret.jpg"), "link.jpg"]  # the first two are one file
    for entry in allowed:
        record = ingest_file(root, entry.path, IngestOptions.from_values({"allow_outside_root": True}))
        assert record["status"] == "ok", record


def test_walk_does_not_follow_links_out_of_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    _jpeg(root / "sub" / "in.jpg")
    (tmp_path / "outside").mkdir()
    _jpeg(tmp_path / "outside" / "secret.jpg")
    os.symlink(tmp_path / "outside", root / "outdir")
    os.symlink(tmp_path / "outside" / "secret.jpg", root / "secret.jpg")
    skipped: list[tuple[str, str]] = []
    entries = list_images(root, follow_symlinks=True, skipped=skipped)
    assert [e.path for e in entries] == ["secret.jpg", "sub/in.jpg"]
    assert skipped == [("outdir", "symlink_outside_root")]
    # the file link is listed (so it is reported), and ingest refuses it
    assert ingest_file(root, "secret.jpg", IngestOptions.from_values())["error"] == "permission_denied"
    assert [e.path for e in list_images(root, follow_symlinks=True, allow_outside_root=True)] == ["outdir/secret.jpg", "secret.jpg", "sub/in.jpg"]


def test_stale_or_cut_ingest_file_is_refused_by_the_next_stage(tmp_path):
    from shardlens.records import write_jsonl
    from shardlens.stages.inputs import IncompleteIngestError, distinct_images

    cache = tmp_path / "cache"
    (cache / "shards").mkdir(parents=True)
    (cache / "shards" / "0003.tsv").write_text("path\tsize\tmtime_ns\na.png\t1\t0\nb.png\t1\t0\n")
    record = ingest._empty_record("a.png") | {"image_id": "0" * 64, "bytes": 1, "width": 1, "height": 1, "format": "PNG"}
    write_jsonl(cache / "ingest" / "0003.jsonl", "ingest", [record, record | {"path": "b.png"}])
    assert len(distinct_images(cache / "ingest" / "0003.jsonl")) == 1
    write_jsonl(cache / "ingest" / "0003.jsonl", "ingest", [record])  # b.png's line lost
    with pytest.raises(
        IncompleteIngestError, match=r"0003\.jsonl does not match its listing .*no record for 1 listed path\(s\) \('b\.png'\).*--forcerun .*0003\.jsonl"
    ):
        distinct_images(cache / "ingest" / "0003.jsonl")


# --- the review import never opens a path from the CSV ------------------------------------------


def test_review_import_uses_image_ids_and_never_opens_csv_paths(tmp_path):
    """reviews.py reads image_id / region_id / line_no from the CSV; its path column is never
    used. An audit hook records every file the import opens."""
    from shardlens import reviews

    db, image_id = _one_line_catalog(tmp_path)
    bait = tmp_path / "bait.png"
    bait.write_bytes(b"never read")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "image_id,path,line_no,machine_label,review_status,review_label\n"
        f"{image_id},{bait},0,EXIT,relabeled,exit sign\n"
        f"{image_id},../../etc/passwd,0,EXIT,relabeled,exit sign\n"
    )
    opened: list[str] = []
    recording = [True]

    def hook(event, args):
        if recording[0] and event in ("open", "sqlite3.connect", "os.listdir", "os.scandir"):
            opened.append(str(args[0]))

    sys.addaudithook(hook)
    try:
        written = reviews.import_review_csv(sheet, db, tmp_path / "store.sqlite")
    finally:
        recording[0] = False
    assert written == 1
    assert not any("bait" in p or "passwd" in p for p in opened), opened
    assert {Path(p).name for p in opened if p.startswith(str(tmp_path))} <= {"sheet.csv", "catalog.sqlite", "store.sqlite"}
    row = sqlite3.connect(tmp_path / "store.sqlite").execute("SELECT image_id, line_no, label FROM reviews").fetchone()
    assert row == (image_id, 0, "exit sign")


def _one_line_catalog(tmp_path):
    from shardlens import catalog

    db = tmp_path / "catalog.sqlite"
    conn = catalog.connect(db)
    image_id = "b" * 64
    conn.execute("INSERT INTO paths (shard, path, image_id, status) VALUES ('0000', 'x.png', ?, 'ok')", (image_id,))
    conn.execute(
        "INSERT INTO ocr_lines (shard, image_id, line_no, text, confidence, bbox, source) VALUES ('0000', ?, 0, 'EXIT', 0.9, '[0,0,1,1]', 't')",
        (image_id,),
    )
    conn.close()
    return db, image_id


def test_review_import_lists_every_problem_and_changes_nothing(tmp_path):
    """An unknown image, a bad status and a conflicting duplicate on three lines: all three are
    reported, with line and column, format and catalog checks alike, and nothing is stored."""
    from shardlens import reviews

    db, image_id = _one_line_catalog(tmp_path)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "image_id,line_no,machine_label,review_status,review_label\n"
        f"{'c' * 64},0,EXIT,accepted,\n"
        f"{image_id},0,EXIT,approved,\n"
        f"{image_id},0,EXIT,relabeled,exit\n"
        f"{image_id},0,EXIT,relabeled,way out\n"
    )
    with pytest.raises(reviews.ReviewError) as error:
        reviews.import_review_csv(sheet, db, tmp_path / "store.sqlite")
    problems = error.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 2, column image_id", "line 3, column review_status", "line 5"]
    assert "conflicts with line 4" in problems[2]
    assert not (tmp_path / "store.sqlite").exists()


def test_review_import_reads_semicolons_and_reports_a_huge_cell(tmp_path):
    from shardlens import reviews

    db, image_id = _one_line_catalog(tmp_path)
    sheet = tmp_path / "excel.csv"
    sheet.write_bytes("\ufeffimage_id;line_no;machine_label;review_status;review_label\r\n".encode() + f"{image_id};0;EXIT;relabeled;exit sign\r\n".encode())
    assert reviews.import_review_csv(sheet, db, tmp_path / "store.sqlite") == 1  # a European-locale export
    huge = tmp_path / "huge.csv"
    huge.write_text("image_id,line_no,review_status,review_label\n" + f"{image_id},0,relabeled,{'x' * 10_000_000}\n")
    with pytest.raises(reviews.ReviewError) as error:
        reviews.import_review_csv(huge, db, tmp_path / "store2.sqlite")
    assert error.value.problems == ["line 2, column review_label: a cell of 10,000,000 characters (at most 1,048,576)"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id;status\nx;accepted\n")
    with pytest.raises(reviews.ReviewError, match=r"missing column\(s\) image_id, review_status \(header read as separated by semicolons"):
        reviews.import_review_csv(wrong, db, tmp_path / "store3.sqlite")


def test_a_listed_name_with_a_trailing_space_is_kept_and_pointed_out(tmp_path):
    """List-file names are kept exactly; the report quotes the name and says why it was not found."""
    from shardlens.images.decoding import ImageError, Limits, read_bytes

    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(ImageError) as missing:
        read_bytes(tmp_path / "photo.jpg ", Limits.from_values())
    assert missing.value.reason == "not_found"
    assert missing.value.detail == f"{str(tmp_path / 'photo.jpg ')!r} does not exist (the listed name has spaces at its start or end; names are kept exactly)"


def test_review_import_into_a_missing_catalog_creates_nothing(tmp_path):
    from shardlens import reviews

    sheet = tmp_path / "sheet.csv"
    sheet.write_text("image_id,line_no,review_status,review_label\n" + f"{'b' * 64},0,relabeled,exit\n")
    with pytest.raises(reviews.ReviewError, match="no such catalog"):
        reviews.import_review_csv(sheet, tmp_path / "missing.sqlite", tmp_path / "store.sqlite")
    assert not (tmp_path / "missing.sqlite").exists() and not (tmp_path / "store.sqlite").exists()


# --- headers that lie, names, many files, files that change, full disks --------------------------


def test_a_jpeg_whose_header_declares_more_than_it_holds_is_not_ok(tmp_path):
    """Issue 14 item 4a: a real 1 kB JPEG, end marker included, whose header says 1000x65500.
    libjpeg fills the missing 65 million pixels with grey and reports success; before the fix
    ingest recorded it ``ok`` with that size. Complete JPEGs stay ok, also a plain mid-grey one
    (the fill colour) and one with a ZIP archive after its end marker."""
    from skimage import data as skdata

    tall = tall_small_jpeg(1000, 65_500)
    assert len(tall) <= 1024 and tall.endswith(b"\xff\xd9")
    assert Image.open(io.BytesIO(tall)).size == (1000, 65_500)
    (tmp_path / "tall.jpg").write_bytes(tall)
    record = ingest_file(tmp_path, "tall.jpg", IngestOptions.from_values())
    assert (record["status"], record["error"], record["width"], record["height"]) == ("error", "truncated", None, None)
    assert "declared 1000x65500 pixels" in record["error_detail"] and record["image_id"]
    # the decoder of detect/gate/ocr (drafted, reduced scale) refuses it too
    with pytest.raises(ImageError, match="truncated"):
        open_image(tall, Limits.from_values(), draft_size=480)
    for name, image, kw in [
        ("grey.jpg", Image.new("RGB", (50, 40), (128, 128, 128)), {}),
        ("grey_progressive.jpg", Image.new("L", (50, 40), 128), {"progressive": True}),
        ("photo.jpg", Image.fromarray(skdata.astronaut()), {"quality": 90}),
    ]:
        buf = io.BytesIO()
        image.save(buf, "JPEG", **kw)
        (tmp_path / name).write_bytes(buf.getvalue())
        record = ingest_file(tmp_path, name, IngestOptions.from_values())
        assert (record["status"], record["width"], record["height"]) == ("ok", *image.size), record


def test_a_list_file_line_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "a.png").write_bytes(_ok_png())
    (tmp_path / "list.txt").write_bytes(b"a.png\nbad\xffname.png\n")
    with pytest.raises(ListingError, match=r"list\.txt line 2: 'bad\\\\xffname\.png' is not valid UTF-8"):
        list_images(tmp_path, list_file=tmp_path / "list.txt")


def test_ten_thousand_files_in_one_folder(tmp_path):
    """Listed, sharded and ingested (the whole folder, in the decoder worker) in seconds."""
    from shardlens.shards import listing_text, plan_shards, write_listing

    root = tmp_path / "flat"
    root.mkdir()
    data = _ok_png()
    for i in range(10_000):
        (root / f"img{i:05d}.png").write_bytes(data + i.to_bytes(4, "big"))  # distinct bytes, same image
    started = time.monotonic()
    entries = list_images(root)
    plan = plan_shards(entries, 1)
    listed = time.monotonic() - started
    assert len(entries) == 10_000 and [e.path for e in entries] == sorted(f"img{i:05d}.png" for i in range(10_000))
    write_listing(tmp_path / "shards" / "0000.tsv", listing_text(plan.shards["0000"]))
    started = time.monotonic()
    summary = ingest.run_shard(
        tmp_path / "shards" / "0000.tsv",
        root,
        tmp_path / "ingest" / "0000.jsonl",
        "0000",
        Limits.from_values({"decode_timeout_s": 30}),
        allow_outside_root=False,
    )
    ingested = time.monotonic() - started
    print(f"\n10,000 files: listed and sharded in {listed:.2f} s, ingested in {ingested:.1f} s")
    assert (summary["images"], summary["ok"], summary["errors"], summary["records"]) == (10_000, 10_000, 0, 10_000)
    assert listed < 10 and ingested < 240


def test_a_file_changed_or_deleted_between_ingest_and_gate(tmp_path, caplog):
    """Ingest, then one file is rewritten and one deleted, then the gate runs: neither gets a
    record made from other bytes under its old image_id; both are skipped as ``ingest_error``,
    the log names each file and why, the others are scored as usual, and the next plan's listing
    differs, so the next run ingests the shard again."""
    from shardlens.options import GateOptions
    from shardlens.shards import listing_text, plan_shards, write_listing
    from shardlens.stages import gate

    from conftest import text_image

    root = tmp_path / "images"
    root.mkdir()
    for name, words in [("a.png", "OPEN"), ("b.png", "EXIT"), ("c.png", "STOP")]:
        text_image([words]).save(root / name)
    plan = plan_shards(list_images(root), 1)
    listing = listing_text(plan.shards["0000"])
    cache = tmp_path / "cache"
    write_listing(cache / "shards" / "0000.tsv", listing)
    ingest.run_shard(
        cache / "shards" / "0000.tsv", root, cache / "ingest" / "0000.jsonl", "0000", Limits.from_values({"decode_timeout_s": 30}), allow_outside_root=False
    )
    before = {r["path"]: r["image_id"] for r in _read(cache / "ingest" / "0000.jsonl", "ingest")}

    text_image(["SOMETHING ELSE"], size=(640, 200)).save(root / "b.png")  # changed: still a fine image
    (root / "c.png").unlink()
    with caplog.at_level("WARNING"):
        gate.run(
            cache / "ingest" / "0000.jsonl", root, cache / "gate" / "0000.jsonl", "0000", GateOptions.from_values(), threads=1, limits=Limits.from_values()
        )
    records = {r["image_id"]: r for r in _read(cache / "gate" / "0000.jsonl", "gate")}
    assert set(records) == set(before.values())
    assert records[before["a.png"]]["skip_reason"] != "ingest_error" and records[before["a.png"]]["has_text"]
    for name in ("b.png", "c.png"):
        assert (records[before[name]]["decision"], records[before[name]]["skip_reason"]) == ("skip", "ingest_error"), name
    log = caplog.text
    assert "b.png changed after ingest" in log and "ingested again on the next run" in log, log
    assert "c.png" in log and "does not exist" in log, log
    again = listing_text(plan_shards(list_images(root), 1).shards["0000"])
    assert again != listing and "b.png" in again and "c.png" not in again


def _read(path, kind):
    from shardlens.records import read_jsonl

    return list(read_jsonl(path, kind))


_JOB = """
import os, sqlite3, sys
sys.path.insert(0, {repo!r})
{route}
disk = {disk!r}
with open(os.path.join(disk, "another-job.bin"), "wb", buffering=0) as other:  # something else fills the disk
    try:
        while True:
            other.write(b"\\0" * 65536)
            other.flush()
    except OSError:
        pass
conn = sqlite3.connect(os.path.join(disk, "db.sqlite"))
conn.execute("CREATE TABLE t (x)")
conn.execute("INSERT INTO t VALUES (randomblob(500000))")
conn.commit()
"""


def test_a_job_failing_on_a_full_disk_says_why_in_its_log(tmp_path):
    """Issue 14 item 5a, the root cause: a job's log lives on the disk that filled up. With the
    old ``sys.stderr = open(log)`` the traceback cannot be written: "lost sys.stderr" on the
    console, exit status 120, the reason lost. Through ``jobs.log_job`` (every script's first
    line) the log ends with ``catalog failed: <reason>`` on one line, then the traceback, and the
    process exits 1. Runs on a 1 MB tmpfs as root; where mounting is refused, under
    RLIMIT_FSIZE."""
    with SmallDisk(tmp_path / "disk", 1 << 20) as disk:
        print(f"\nsmall disk: {disk.kind} {disk.why_not_tmpfs}")
        results = {}
        for name, route in [
            ("old", 'sys.stderr = open(os.path.join({disk!r}, "old.log"), "w", buffering=1)'),
            ("new", 'from shardlens.jobs import log_job\nlog_job(os.path.join({disk!r}, "new.log"), "catalog")'),
        ]:
            for leftover in disk.path.glob("*.bin"):
                leftover.unlink()
            for leftover in disk.path.glob("db.sqlite*"):
                leftover.unlink()
            script = tmp_path / f"{name}.py"
            script.write_text(_JOB.format(repo=str(REPO), route=route.format(disk=str(disk.path)), disk=str(disk.path)))
            proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, preexec_fn=disk.limit, timeout=120)
            results[name] = (proc, (disk.path / f"{name}.log").read_text())
    old, old_log = results["old"]
    new, new_log = results["new"]
    if disk.kind == "tmpfs":  # the fault as the issue saw it (under RLIMIT_FSIZE the log itself is small enough)
        assert old.returncode == 120 and "lost sys.stderr" in old.stderr and "disk is full" not in old_log, (old.returncode, old.stderr, old_log)
    assert new.returncode == 1, (new.returncode, new.stderr)
    assert "lost sys.stderr" not in new.stderr
    reason = new_log.splitlines()[0]  # nothing was logged before the disk filled (as in the issue)
    assert reason.startswith("catalog failed: OperationalError: ") and ("disk is full" in reason or "disk I/O error" in reason), reason
    assert "Traceback (most recent call last):" in new_log.split(reason, 1)[1]
    assert reason in new.stderr  # and the one line on the console, with where the log is
    assert "new.log" in new.stderr


def test_a_stage_output_on_a_full_disk_fails_whole_and_leaves_the_old_file(tmp_path):
    """Every stage writes through records.write_jsonl (atomic): on a full disk the write fails
    with ENOSPC (EFBIG under RLIMIT_FSIZE), no temporary file stays, the previous output is intact."""
    import errno
    import resource

    from shardlens.records import write_jsonl

    record = ingest._empty_record("a.png") | {"image_id": "0" * 64, "bytes": 1, "width": 1, "height": 1, "format": "PNG"}
    with SmallDisk(tmp_path / "disk", 256 * 1024) as disk:
        out = disk.path / "ingest" / "0000.jsonl"
        write_jsonl(out, "ingest", [record])
        old = out.read_bytes()
        disk.fill(leave=0)
        many = [record | {"path": f"p{i:06d}.png"} for i in range(5_000)]  # about 1.3 MB of lines
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if disk.kind == "RLIMIT_FSIZE":
            resource.setrlimit(resource.RLIMIT_FSIZE, (disk.size, hard))
        try:
            with pytest.raises(OSError) as full:
                write_jsonl(out, "ingest", many)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert full.value.errno in (errno.ENOSPC, errno.EFBIG)
        assert out.read_bytes() == old
        assert [p.name for p in out.parent.iterdir()] == ["0000.jsonl"]


def test_every_script_routes_its_failures_to_its_log_first():
    """One place for it: each script's first statement is ``log_job(snakemake.log[0],
    snakemake.rule)`` (only standard-library imports and shardlens.jobs before it), so that an
    error anywhere after, an import included, ends in the rule's log with its one-line reason."""
    import ast

    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert len(scripts) >= 14
    for script in scripts:
        body = ast.parse(script.read_text()).body
        first = next(i for i, node in enumerate(body) if not isinstance(node, (ast.Import, ast.ImportFrom)))
        assert ast.unparse(body[first]) == "log_job(snakemake.log[0], snakemake.rule)", script.name
        for node in body[:first]:
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert all(m == "shardlens.jobs" or not m.startswith("shardlens") for m in modules), script.name
