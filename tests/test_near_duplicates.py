"""Near-duplicate images: the perceptual hash ingest records, the grouping (against brute force,
independent of order), the catalog's near_duplicates table, and reviews applied to a group.

The near-duplicate pairs are made from real photos of the quality set (tests/quality/SOURCES.md):
a copy at half size re-encoded as JPEG quality 30, and a copy with its contrast lowered to 0.7
(JPEG quality 85); a copy cropped by 2% on each side is *not* a near-duplicate at the default
distance of 6. The distances asserted are the ones measured with imagehash 4.3.2.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from shardlens.images.decoding import Limits
from shardlens.near_duplicates import close_pairs, group_hashes, hamming, hashes_to_array, perceptual_hash
from shardlens.options import IngestOptions
from shardlens.records import validate_record
from shardlens.stages import ingest

from conftest import REPO
from small_catalog import catalog_of_folder

QUALITY = REPO / "tests" / "quality" / "images"
DOG = QUALITY / "objects" / "darknet_dog.jpg"
GIRAFFE = QUALITY / "objects" / "darknet_giraffe.jpg"


def reencoded(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    out = Image.open(buffer)
    out.load()
    return out


def variants(source: Path) -> dict[str, Image.Image]:
    """The photo and its edited copies, as decoded images."""
    image = Image.open(source)
    image.load()
    w, h = image.size
    return {
        "original": image,
        "half_q30": reencoded(image.resize((w // 2, h // 2), Image.LANCZOS), 30),
        "contrast": reencoded(ImageEnhance.Contrast(image).enhance(0.7), 85),
        "crop2": reencoded(image.crop((w // 50, h // 50, w - w // 50, h - h // 50)), 85),
    }


def save_variants(source: Path, folder: Path, stem: str) -> dict[str, Path]:
    """The copies of :func:`variants` written as files (the original copied byte for byte)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, image in variants(source).items():
        path = folder / f"{stem}_{name}.jpg"
        if name == "original":
            shutil.copy(source, path)
        else:
            image.save(path, "JPEG", quality=95)
        out[name] = path
    return out


# ------------------------------------------------------------------------------- the hash


def test_perceptual_hash_of_real_photos_and_their_copies():
    dog = {name: perceptual_hash(image) for name, image in variants(DOG).items()}
    assert dog["original"] == "b401c37e63cb49ab"
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in dog.values())
    measured = {name: hamming(dog["original"], h) for name, h in dog.items()}
    assert measured == {"original": 0, "half_q30": 0, "contrast": 2, "crop2": 8}
    giraffe = Image.open(GIRAFFE)
    assert hamming(dog["original"], perceptual_hash(giraffe)) == 24  # a different photo: far


def test_ingest_records_the_hash_or_null_and_loses_nothing(tmp_path):
    root = tmp_path / "images"
    files = save_variants(DOG, root, "dog")
    Image.new("RGB", (64, 48), (200, 30, 30)).convert("LAB").save(root / "lab.tif")  # decodes; no grey conversion
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    records = {p: ingest.ingest_file(root, p, IngestOptions.from_values()) for p in sorted(q.name for q in root.iterdir())}
    for record in records.values():
        validate_record("ingest", record)
    assert records[files["original"].name]["phash"] == "b401c37e63cb49ab"
    assert hamming(records[files["original"].name]["phash"], records[files["contrast"].name]["phash"]) == 2
    lab = records["lab.tif"]
    assert (lab["status"], lab["format"], lab["width"], lab["height"], lab["phash"]) == ("ok", "TIFF", 64, 48, None)
    assert records["broken.jpg"]["status"] == "error" and records["broken.jpg"]["phash"] is None
    # the hash is the file's alone: the same file ingested among other files, or alone, hashes the same
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(files["contrast"], alone / "x.jpg")
    assert ingest.ingest_file(alone, "x.jpg", IngestOptions.from_values())["phash"] == records[files["contrast"].name]["phash"]


def test_ingest_shard_counts_images_without_a_hash(tmp_path):
    from shardlens.images.listing import list_images
    from shardlens.shards import plan_shards, write_listings

    root = tmp_path / "images"
    save_variants(DOG, root, "dog")
    Image.new("RGB", (64, 48), (200, 30, 30)).convert("LAB").save(root / "lab.tif")
    plan = plan_shards(list_images(root), 1)
    write_listings(plan, tmp_path / "shards")
    shard = plan.names[0]
    summary = ingest.run_shard(
        tmp_path / "shards" / f"{shard}.tsv", root, tmp_path / "ingest.jsonl", shard, Limits.from_values({"decode_timeout_s": 30}), allow_outside_root=False
    )
    assert summary["ok"] == 5 and summary["errors"] == 0 and summary["extra"] == {"no_phash": 1}


def test_schema_refuses_a_hash_on_an_error_record_and_a_malformed_hash():
    from shardlens.records import RecordError

    record = ingest._empty_record("a.jpg") | {"status": "error", "error": "not_found", "error_detail": "gone"}
    validate_record("ingest", record)
    with pytest.raises(RecordError, match="phash"):
        validate_record("ingest", record | {"phash": "b401c37e63cb49ab"})
    ok = ingest._empty_record("a.jpg") | {"image_id": "0" * 64, "bytes": 1, "width": 1, "height": 1, "format": "PNG"}
    validate_record("ingest", ok | {"phash": "b401c37e63cb49ab"})
    with pytest.raises(RecordError, match="phash"):
        validate_record("ingest", ok | {"phash": "B401C37E63CB49AB0"})


# --------------------------------------------------------------------------- the grouping


def flipped(value: int, bits) -> int:
    for bit in bits:
        value ^= 1 << int(bit)
    return value


def test_close_pairs_are_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(7)
    for n, d in ((2500, 6), (1500, 3), (800, 0), (600, 10)):
        hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2)
        for _ in range(300):  # planted near copies, some within d bits, some just beyond
            src, dst = rng.integers(n, size=2)
            hashes[dst] = np.uint64(flipped(int(hashes[src]), rng.choice(64, size=rng.integers(0, d + 3), replace=False)))
        i, j, dist = close_pairs(hashes, d)
        brute = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
        bi, bj = np.nonzero(np.triu(brute <= d, 1))
        assert (i.tolist(), j.tolist()) == (bi.tolist(), bj.tolist()), (n, d)
        assert dist.tolist() == brute[bi, bj].tolist()
        assert len(i) > 50  # the planted pairs are there: the test compares something
    # blank images all hash alike: one long run of equal keys (300 equal hashes, 44,850 pairs)
    hashes = np.concatenate([np.zeros(300, dtype=np.uint64), rng.integers(0, 2**63, size=700, dtype=np.uint64)])
    i, j, dist = close_pairs(hashes, 6)
    brute = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    bi, bj = np.nonzero(np.triu(brute <= 6, 1))
    assert (i.tolist(), j.tolist()) == (bi.tolist(), bj.tolist()) and len(i) >= 300 * 299 // 2


def test_an_update_from_the_known_groups_equals_grouping_everything_again():
    rng = np.random.default_rng(3)
    n = 3000
    hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2)
    for _ in range(900):  # chains and pairs across the old and the new images
        src, dst = rng.integers(n, size=2)
        hashes[dst] = np.uint64(flipped(int(hashes[src]), rng.choice(64, size=rng.integers(0, 7), replace=False)))
    ids = [f"{k:064x}" for k in rng.permutation(n)]
    hexes = [f"{int(h):016x}" for h in hashes]
    old = 2000
    known = [(m, g) for m, g, _, _ in group_hashes(ids[:old], hexes[:old], 6)]
    new_ids = set(ids[old:]) | set(ids[:50])  # an updated shard may also hold images seen before
    everything = group_hashes(ids, hexes, 6)
    assert group_hashes(ids, hexes, 6, new_ids=new_ids, known_groups=known) == everything
    assert len({g for _, g, _, _ in everything}) > 50 and max(size for *_, size in everything) > 2
    # and close_pairs restricted to the new hashes gives exactly the full pairs that touch one
    arr = hashes_to_array(hexes)
    new = np.array([i in new_ids for i in ids])
    i, j, _ = close_pairs(arr, 6)
    keep = new[i] | new[j]
    ni, nj, _ = close_pairs(arr, 6, new)
    assert (ni.tolist(), nj.tolist()) == (i[keep].tolist(), j[keep].tolist())


def test_groups_are_connected_components_named_by_their_smallest_image_id():
    a = 0x0F0F0F0F0F0F0F0F
    b = flipped(a, range(5))  # a~b (5 bits)
    c = flipped(b, range(10, 15))  # b~c (5), a-c 10 bits: in the group through b
    far = flipped(a, range(0, 64, 2))  # 32 bits from a
    far2 = flipped(far, [63])
    ids = ["e" * 64, "b" * 64, "c" * 64, "a" * 64, "d" * 64, "f" * 64]
    hexes = [f"{a:016x}", f"{b:016x}", f"{c:016x}", f"{far:016x}", f"{far2:016x}", f"{flipped(a, range(1, 64, 2)):016x}"]
    groups = group_hashes(ids, hexes, 6)
    assert groups == [
        ("a" * 64, "a" * 64, 0, 2),
        ("b" * 64, "b" * 64, 0, 3),
        ("c" * 64, "b" * 64, 5, 3),
        ("d" * 64, "a" * 64, 1, 2),
        ("e" * 64, "b" * 64, 5, 3),
    ]
    rng = np.random.default_rng(0)
    for _ in range(5):  # any order of the images gives the same groups
        order = rng.permutation(len(ids))
        assert group_hashes([ids[k] for k in order], [hexes[k] for k in order], 6) == groups
    assert group_hashes(ids, hexes, 4) == [("a" * 64, "a" * 64, 0, 2), ("d" * 64, "a" * 64, 1, 2)]
    assert group_hashes(ids, hexes, 0) == []
    assert hashes_to_array(["ffffffffffffffff"])[0] == np.uint64(2**64 - 1)


# ---------------------------------------------------------------------------- the catalog


def near_rows(db: Path) -> dict[str, tuple]:
    """path -> (group's representative's path, distance, group size) of every grouped image."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            """
            SELECT p.path, g.path, n.distance, n.group_size FROM near_duplicates n
            JOIN images p ON p.image_id = n.image_id JOIN images g ON g.image_id = n.group_id
            """
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: r[1:] for r in rows}


def dog_run(run: Path, crop: bool = True, **config) -> Path:
    """Real photos through the real stages (tests/small_catalog.py): the dog and three copies
    (two near, the 2% crop at 8 bits not at the default 6), and the giraffe; returns the catalog."""
    files = save_variants(DOG, run / "images" / "dogs", "dog")
    if not crop:
        files.pop("crop2").unlink()
    shutil.copy(GIRAFFE, run / "images" / "giraffe.jpg")
    return catalog_of_folder(run, **config)


@pytest.fixture(scope="module")
def dog_catalog(tmp_path_factory) -> Path:
    return dog_run(tmp_path_factory.mktemp("dogs") / "run")


# The group's representative is its smallest image id: the half-size copy's (asserted below);
# the original and the half-size copy hash alike, the contrast copy 2 bits away.
DOG_GROUP = {
    "dogs/dog_contrast.jpg": ("dogs/dog_half_q30.jpg", 2, 3),
    "dogs/dog_half_q30.jpg": ("dogs/dog_half_q30.jpg", 0, 3),
    "dogs/dog_original.jpg": ("dogs/dog_half_q30.jpg", 0, 3),
}


def test_catalog_groups_the_near_copies_of_a_real_photo(dog_catalog):
    conn = sqlite3.connect(dog_catalog)
    ids = dict(conn.execute("SELECT path, image_id FROM images"))
    hashes = dict(conn.execute("SELECT path, phash FROM paths"))
    conn.close()
    assert min(ids[p] for p in DOG_GROUP) == ids["dogs/dog_half_q30.jpg"]
    assert near_rows(dog_catalog) == DOG_GROUP
    assert hamming(hashes["dogs/dog_original.jpg"], hashes["dogs/dog_crop2.jpg"]) == 8
    assert hamming(hashes["dogs/dog_original.jpg"], hashes["giraffe.jpg"]) == 24


def test_groups_do_not_depend_on_the_sharding(tmp_path):
    one = dog_run(tmp_path / "one", shards=1)
    three = dog_run(tmp_path / "three", shards=3)
    conn = sqlite3.connect(three)
    # the group's images are in two shards here, in one there
    assert conn.execute("SELECT COUNT(DISTINCT shard) FROM paths WHERE image_id IN (SELECT image_id FROM near_duplicates)").fetchone()[0] == 2
    conn.close()
    assert near_rows(one) == near_rows(three) == DOG_GROUP


def test_max_distance_regroups_in_place_and_null_turns_grouping_off(dog_catalog, tmp_path):
    from shardlens.catalog import build_catalog
    from shardlens.review_writer import mirror_reviews

    run = tmp_path / "run"
    shutil.copytree(dog_catalog.parents[1], run)
    db, cache = run / "results" / "annotations.sqlite", run / "cache"
    stats = build_catalog(cache, db, near_duplicate_distance=8, log=lambda m: None)
    assert stats["mode"] == "incremental" and stats["shards_loaded"] == 0 and stats["near_duplicates"] == 4
    assert near_rows(db) == {**{p: (g, d, 4) for p, (g, d, _) in DOG_GROUP.items()}, "dogs/dog_crop2.jpg": ("dogs/dog_half_q30.jpg", 8, 4)}
    mirror_reviews(run / "reviews.sqlite", db)  # a review import keeps the recorded distance
    assert len(near_rows(db)) == 4
    stats = build_catalog(cache, db, near_duplicate_distance=None, log=lambda m: None)
    assert stats["near_duplicates"] == 0 and near_rows(db) == {}
    stats = build_catalog(cache, db, log=lambda m: None)  # recorded: still off
    assert stats["near_duplicates"] == 0


def test_a_new_near_copy_joins_the_group_incrementally_as_a_full_rebuild_finds(tmp_path):
    from shardlens.catalog import build_catalog

    run = tmp_path / "run"
    db = dog_run(run, crop=False)
    assert near_rows(db) == DOG_GROUP
    Image.open(DOG).convert("L").save(run / "images" / "dogs" / "dog_grey.png")  # grey and PNG: 0 bits
    catalog_of_folder(run)
    conn = sqlite3.connect(db)
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    conn.close()
    assert runs == 2  # updated in place
    conn = sqlite3.connect(db)
    ids = dict(conn.execute("SELECT path, image_id FROM images"))
    conn.close()
    members = [*DOG_GROUP, "dogs/dog_grey.png"]
    representative = min(members, key=ids.__getitem__)
    got = near_rows(db)
    assert {p: (g, n) for p, (g, _, n) in got.items()} == {p: (representative, 4) for p in members}
    full = tmp_path / "full.sqlite"
    build_catalog(run / "cache", full, full=True, log=lambda m: None)
    assert near_rows(full) == got
    # a grouped image gone: everything is grouped again, as a rebuild does
    (run / "images" / "dogs" / "dog_contrast.jpg").unlink()
    catalog_of_folder(run)
    shrunk = near_rows(db)
    assert sorted(shrunk) == ["dogs/dog_grey.png", "dogs/dog_half_q30.jpg", "dogs/dog_original.jpg"]
    assert {n for *_, n in shrunk.values()} == {3}
    build_catalog(run / "cache", full, full=True, log=lambda m: None)
    assert near_rows(full) == shrunk


# ------------------------------------------------------------- reviews reach the group


def final(db: Path) -> dict[tuple[str, int], tuple]:
    """(path, region_id) -> (machine label, final label, label_source, propagated_from) of every region."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT i.path, f.region_id, f.machine_label, f.final_label, f.label_source, f.propagated_from "
            "FROM final_annotations f JOIN images i USING (image_id) WHERE f.item = 'region'"
        ).fetchall()
    finally:
        conn.close()
    return {(r[0], r[1]): r[2:] for r in rows}


def test_a_review_of_one_photo_reaches_its_near_copies_marked_propagated(dog_catalog, tmp_path):
    """On the real photos: accepting the dog of the original and relabeling its bicycle reach the
    matching regions (same class, normalised IoU >= 0.5) of the half-size and contrast copies,
    not the 2% crop (8 bits: in no group) nor the giraffe; a rejection reaches nobody; a person's
    own review of a copy's region wins."""
    from shardlens.propagation import normalised_iou
    from shardlens.review_store import Review
    from shardlens.reviews import record_reviews

    run = tmp_path / "run"
    shutil.copytree(dog_catalog.parents[1], run)
    db, store = run / "results" / "annotations.sqlite", run / "reviews" / "reviews.sqlite"
    conn = sqlite3.connect(db)
    ids = dict(conn.execute("SELECT path, image_id FROM images"))
    conn.close()
    before = final(db)
    assert before[("dogs/dog_original.jpg", 0)][:2] == ("dog", "dog") and before[("dogs/dog_original.jpg", 1)][0] == "bicycle"
    assert before[("dogs/dog_original.jpg", 2)][0] == "car"
    original = ids["dogs/dog_original.jpg"]
    record_reviews(
        [
            Review(original, 0, None, "accepted", "dog", "ana"),
            Review(original, 1, None, "relabeled", "touring bike", "ana"),
            Review(original, 2, None, "rejected", None, "ana"),
            Review(ids["dogs/dog_contrast.jpg"], 1, None, "rejected", None, "bo"),  # a person's own review
        ],
        db, store, source="test",
    )  # fmt: skip
    after = final(db)
    changed = {k: v for k, v in after.items() if v != before[k]}
    dog_key, bike_key = f"{original}/region/0", f"{original}/region/1"
    assert changed == {
        ("dogs/dog_original.jpg", 0): ("dog", "dog", "review", None),
        ("dogs/dog_original.jpg", 1): ("bicycle", "touring bike", "review", None),
        ("dogs/dog_original.jpg", 2): ("car", None, "review", None),
        ("dogs/dog_contrast.jpg", 1): ("bicycle", None, "review", None),
        ("dogs/dog_contrast.jpg", 0): ("dog", "dog", "propagated", dog_key),
        ("dogs/dog_half_q30.jpg", 1): ("dog", "dog", "propagated", dog_key),
        ("dogs/dog_half_q30.jpg", 0): ("bicycle", "touring bike", "propagated", bike_key),
        # the copies' second bicycle boxes lie inside the reviewed one: normalised IoU 0.51 and 0.55
        ("dogs/dog_half_q30.jpg", 4): ("bicycle", "touring bike", "propagated", bike_key),
        ("dogs/dog_contrast.jpg", 5): ("bicycle", "touring bike", "propagated", bike_key),
    }
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT item_key, rule, similarity FROM propagated_labels ORDER BY item_key").fetchall()
    boxes = {(p, r): json.loads(b) for p, r, b in conn.execute("SELECT i.path, r.region_id, r.bbox FROM regions r JOIN images i USING (image_id)")}
    sizes = {p: (w, h) for p, w, h in conn.execute("SELECT path, width, height FROM images")}
    conn.close()
    assert {rule for _, rule, _ in rows} == {"near_duplicate"} and len(rows) == 5
    iou = {key: sim for key, _, sim in rows}
    half = ids["dogs/dog_half_q30.jpg"]
    expected = normalised_iou(
        boxes[("dogs/dog_original.jpg", 1)], sizes["dogs/dog_original.jpg"], boxes[("dogs/dog_half_q30.jpg", 4)], sizes["dogs/dog_half_q30.jpg"]
    )
    assert iou[f"{half}/region/4"] == round(expected, 6) and 0.5 <= expected < 0.52
    assert 0.54 < iou[f"{ids['dogs/dog_contrast.jpg']}/region/5"] < 0.56
    assert iou[f"{half}/region/1"] > 0.9 and iou[f"{half}/region/0"] > 0.8
    # the car's rejection reaches no copy, the crop and the giraffe keep their machine labels
    assert after[("dogs/dog_contrast.jpg", 2)] == ("car", "car", "machine", None)
    assert all(v[2] == "machine" for (p, _), v in after.items() if p in ("dogs/dog_crop2.jpg", "giraffe.jpg"))


def test_normalised_iou_compares_boxes_of_images_of_different_sizes():
    from shardlens.propagation import normalised_iou

    assert normalised_iou([10, 20, 110, 220], (400, 400), [5, 10, 55, 110], (200, 200)) == pytest.approx(1.0)
    assert normalised_iou([0, 0, 100, 100], (200, 200), [100, 0, 200, 100], (200, 200)) == 0.0
    assert normalised_iou([0, 0, 100, 100], (200, 200), [50, 0, 150, 100], (200, 200)) == pytest.approx(1 / 3)


def test_ocr_lines_match_by_box_and_the_group_rule_comes_before_clusters(tmp_path):
    """A cache written straight into the contract (test_propagation.write_cache: lines at the
    same boxes), four images: a.png and b.png near-duplicates (3 bits), c.png in the same text
    cluster as b.png's line, d.png far. Relabeling a.png's line reaches b.png's line, although
    OCR read it differently, by the near-duplicate rule before the cluster's; d.png gets nothing."""
    from test_propagation import image_id, labels, write_cache

    from shardlens.catalog import build_catalog
    from shardlens.review_store import Review, connect_store
    from shardlens.review_writer import mirror_reviews
    from shardlens.reviews import record_cluster_review, record_reviews

    db, store = tmp_path / "results" / "annotations.sqlite", tmp_path / "reviews" / "reviews.sqlite"
    base = 0x0F0F0F0F0F0F0F0F
    images = {
        "a.png": {"lines": ["EXIT"], "phash": f"{base:016x}"},
        "b.png": {"lines": ["EX1T"], "phash": f"{flipped(base, [0, 9, 40]):016x}"},
        "c.png": {"lines": ["EX1T"], "phash": f"{flipped(base, range(0, 64, 2)):016x}"},
        "d.png": {"lines": ["EXIT"], "phash": f"{flipped(base, range(1, 64, 2)):016x}"},
    }
    stats = build_catalog(
        write_cache(tmp_path / "cache", images, [(0, "text", ["EX1T"])], {}), db, reviews_db=store, propagate_similarity=None, log=lambda m: None
    )
    assert stats["near_duplicates"] == 2
    record_cluster_review(db, store, 0, "relabeled", "ex1t sign", reviewer="bo", source="test")  # reviews b.png's and c.png's line
    record_reviews([Review(image_id("a.png"), None, 0, "relabeled", "EXIT", "ana")], db, store, source="test")
    got = labels(db, "text")
    assert got[("b.png", "EX1T")] == ("ex1t sign", "review", None)  # a person's review wins
    # without its own review, b.png's line follows a.png's (the same box), before the cluster's verdict
    conn = connect_store(store)
    conn.execute("DELETE FROM reviews WHERE item_key = ?", (f"{image_id('b.png')}/line/0",))
    conn.commit()
    conn.close()
    mirror_reviews(store, db)
    got = labels(db, "text")
    assert got[("b.png", "EX1T")] == ("EXIT", "propagated", f"{image_id('a.png')}/line/0")
    assert got[("c.png", "EX1T")] == ("ex1t sign", "review", None)
    assert got[("d.png", "EXIT")] == ("EXIT", "machine", None)  # the same text, but no near-duplicate


def test_dashboard_queries_of_a_group(dog_catalog):
    from shardlens.dashboard import queries as q

    conn = q.open_catalog(dog_catalog)
    try:
        ids = {r["path"]: r["image_id"] for r in conn.execute("SELECT path, image_id FROM images")}
        group = q.near_duplicate_group(conn, ids["dogs/dog_contrast.jpg"])
        assert [(m["path"], m["distance"], m["group_size"], m["width"]) for m in group] == [
            ("dogs/dog_half_q30.jpg", 0, 3, 384),  # the representative first
            ("dogs/dog_original.jpg", 0, 3, 768),
            ("dogs/dog_contrast.jpg", 2, 3, 768),
        ]
        assert q.near_duplicate_group(conn, ids["giraffe.jpg"]) == []
        assert q.near_duplicate_counts(conn) == {"groups": 1, "images": 3}
        only = q.item_page(conn, q.ItemFilter(near_duplicates_only=True), 0, 100)
        assert {r["path"] for r in only} == set(DOG_GROUP) and len(only) == q.count_items(conn, q.ItemFilter(near_duplicates_only=True))
    finally:
        conn.close()
