"""Stable shard assignment and listing files that change only where images changed."""

from __future__ import annotations

from shardlens.images import ListedImage
from shardlens.shards import listing_text, plan_shards, read_listing, shard_count_for, shard_of, write_listings


def listed(n: int) -> list[ListedImage]:
    return [ListedImage(f"dir{i % 7}/img_{i:05d}.jpg", 1000 + i, 10**18 + i) for i in range(n)]


def test_assignment_depends_only_on_path_and_count():
    assert shard_of("a/b.jpg", 16) == shard_of("a/b.jpg", 16)
    spread = {shard_of(f"img_{i}.jpg", 16) for i in range(500)}
    assert spread == set(range(16))  # every shard gets images


def test_adding_removing_editing_one_image_rewrites_one_listing(tmp_path):
    images = listed(300)
    assert len(write_listings(plan_shards(images, 8), tmp_path)) == 8
    assert write_listings(plan_shards(images, 8), tmp_path) == []  # nothing changed

    added = images + [ListedImage("new/one.jpg", 5, 6)]
    assert write_listings(plan_shards(added, 8), tmp_path) == [f"{shard_of('new/one.jpg', 8):04d}"]

    edited = list(added)
    edited[10] = ListedImage(edited[10].path, 999999, 1)
    assert write_listings(plan_shards(edited, 8), tmp_path) == [f"{shard_of(edited[10].path, 8):04d}"]

    removed = edited[:10] + edited[11:]
    assert write_listings(plan_shards(removed, 8), tmp_path) == [f"{shard_of(edited[10].path, 8):04d}"]


def test_listing_round_trips_awkward_names(tmp_path):
    names = ["plain.jpg", "with space.jpg", "ünïcödé/фото.png", "new\nline.jpg", "tab\there.png"]
    images = [ListedImage(n, 1, 2) for n in sorted(names)]
    plan = plan_shards(images, 1)
    write_listings(plan, tmp_path)
    assert read_listing(tmp_path / "0000.tsv") == sorted(names)
    assert listing_text(images).count("\n") == len(names) + 1  # one line per image, plus header


def test_shard_count_from_size():
    assert shard_count_for(40, None, 100) == 1
    assert shard_count_for(1000, None, 100) == 16
    assert shard_count_for(1000, 5, 100) == 5


def test_empty_shards_get_no_listing_and_stale_ones_go(tmp_path):
    plan = plan_shards(listed(3), 64)
    write_listings(plan, tmp_path)
    assert len(list(tmp_path.glob("*.tsv"))) == len(plan.names) <= 3
    write_listings(plan_shards(listed(1), 64), tmp_path)
    assert len(list(tmp_path.glob("*.tsv"))) == 1
