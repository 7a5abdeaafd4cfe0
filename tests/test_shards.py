"""Stable shard assignment and listing files that change only where images changed."""

from __future__ import annotations

from shardlens.images.listing import ListedImage
from shardlens.shards import listing_text, plan_shards, read_listing, shard_count_for, shard_of, write_listing


def listed(n: int) -> list[ListedImage]:
    return [ListedImage(f"dir{i % 7}/img_{i:05d}.jpg", 1000 + i, 10**18 + i) for i in range(n)]


def test_assignment_depends_only_on_path_and_count():
    assert shard_of("a/b.jpg", 16) == shard_of("a/b.jpg", 16)
    spread = {shard_of(f"img_{i}.jpg", 16) for i in range(500)}
    assert spread == set(range(16))  # every shard gets images


def changed_listings(before, after) -> list[str]:
    """Shards whose listing text differs between two plans (the shard_listing jobs that re-run)."""
    names = sorted(set(before.shards) | set(after.shards))
    return [n for n in names if listing_text(before.shards.get(n, [])) != listing_text(after.shards.get(n, []))]


def test_adding_removing_editing_one_image_changes_one_listing():
    images = listed(300)
    plan = plan_shards(images, 8)
    assert changed_listings(plan, plan_shards(images, 8)) == []  # nothing changed

    added = images + [ListedImage("new/one.jpg", 5, 6)]
    assert changed_listings(plan, plan_shards(added, 8)) == [f"{shard_of('new/one.jpg', 8):04d}"]

    edited = list(added)
    edited[10] = ListedImage(edited[10].path, 999999, 1)
    assert changed_listings(plan_shards(added, 8), plan_shards(edited, 8)) == [f"{shard_of(edited[10].path, 8):04d}"]

    removed = edited[:10] + edited[11:]
    assert changed_listings(plan_shards(edited, 8), plan_shards(removed, 8)) == [f"{shard_of(edited[10].path, 8):04d}"]


def test_listing_round_trips_awkward_names(tmp_path):
    names = ["plain.jpg", "with space.jpg", "ünïcödé/фото.png", "new\nline.jpg", "tab\there.png"]
    images = [ListedImage(n, 1, 2) for n in sorted(names)]
    plan = plan_shards(images, 1)
    write_listing(tmp_path / "0000.tsv", listing_text(plan.shards["0000"]))
    assert read_listing(tmp_path / "0000.tsv") == sorted(names)
    assert listing_text(images).count("\n") == len(names) + 1  # one line per image, plus header


def test_shard_count_from_size():
    assert shard_count_for(40, None, 100) == 1
    assert shard_count_for(1000, None, 100) == 16
    assert shard_count_for(1000, 5, 100) == 5


def test_empty_shards_get_no_jobs():
    plan = plan_shards(listed(3), 64)
    assert len(plan.names) <= 3 and all(plan.shards[name] for name in plan.names)
    assert plan_shards(listed(1), 64).names == [f"{shard_of(listed(1)[0].path, 64):04d}"]
