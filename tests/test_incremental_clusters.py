"""Incremental clusters (labels.refit): new texts join existing clusters without a refit, ids and
names stay stable, `always` gives the clusters of a from-scratch fit, and the same sequence of
runs gives the same clusters. Real all-MiniLM-L6-v2 vectors, real HDBSCAN, real state files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import one_line_error, shardlens_cli

from shardlens.cluster_state import state_path
from shardlens.labels import load_points, run_clustering
from shardlens.records import SCHEMA_VERSION, read_jsonl, write_jsonl
from shardlens.vectors import encode_vector

OPTIONS = {
    "min_cluster_size": 2, "min_samples": 1, "pca_dims": 32, "selection_epsilon": 0.0, "min_similarity": 0.5,
    "refit": "never", "assign_similarity": 0.8, "refit_unassigned_share": 0.1, "fit_max_texts": None,
}  # fmt: skip

FIRST = {
    "0000": {"caption": {"person": 6, "cat": 2, "kitten": 1}, "ocr": {"OPEN 24 HOURS": 1, "Open 24 hours": 1, "EXIT": 1, "Main Street": 1}},
    "0001": {"caption": {"car": 2, "automobile": 1, "person": 3}, "ocr": {"Bahnhofstraße 12": 1, "open 24 hours": 1, "Main St": 1, "EMERGENCY EXIT": 1}},
}
# a later run: new images in a new shard, with look-alikes of existing texts and one stranger
ADDED = {"0002": {"caption": {"kitten": 2, "cats": 1}, "ocr": {"OPEN 24 HRS": 1, "Quantum chromodynamics lecture": 1}}}


@pytest.fixture(scope="module")
def embed():
    from shardlens.models.text_embedder import make_text_embedder

    return make_text_embedder(threads=2).encode


def write_shards(cache: Path, shards: dict, embed) -> list[Path]:
    paths = []
    for shard, kinds in shards.items():
        records = []
        for kind, counts in kinds.items():
            for text, n in sorted(counts.items()):
                image = hashlib.sha256(f"{shard}/{text}".encode()).hexdigest()
                occurrences = [[image, i, None] if kind == "caption" else [image, None, i] for i in range(n)]
                records.append(
                    {"schema_version": SCHEMA_VERSION, "kind": kind, "text": text, "occurrences": occurrences,
                     "model": "all-MiniLM-L6-v2@test", "dim": 384, "vector": encode_vector(embed([text])[0])}
                )  # fmt: skip
        path = cache / "embed" / f"{shard}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, "embedding", records)
        paths.append(path)
    return sorted(cache.glob("embed/*.jsonl"))


def run(cache: Path, files: list[Path], refit: str, **options) -> tuple[list[dict], dict]:
    stats = run_clustering(files, cache / "clusters.jsonl", {**OPTIONS, "refit": refit, **options}, log=lambda _m: None)
    return list(read_jsonl(cache / "clusters.jsonl", "cluster")), stats


def membership(records: list[dict]) -> dict[str, tuple[int, str]]:
    return {m["text"]: (r["cluster_id"], m["membership"]) for r in records for m in r["members"]}


def partition(records: list[dict]) -> set[frozenset]:
    return {frozenset((m["item"], m["text"]) for m in r["members"]) for r in records if r["cluster_id"] >= 0}


def test_new_texts_join_existing_clusters_without_a_refit_and_ids_and_names_stay(tmp_path, embed):
    files = write_shards(tmp_path, FIRST, embed)
    before, stats = run(tmp_path, files, "never")
    assert stats["refit"] and stats["refit_reason"] == "no earlier fit"
    first = membership(before)
    assert {m for _, m in first.values()} == {"fitted"}
    names = {r["cluster_id"]: r["label"] for r in before}

    files = write_shards(tmp_path, ADDED, embed)
    after, stats = run(tmp_path, files, "never")
    assert not stats["refit"] and stats["embedding_files_read"] == 1  # the unchanged shards are not read again
    now = membership(after)
    for text, (cluster, how) in first.items():  # every earlier text keeps its cluster, as fitted
        assert now[text] == (cluster, "fitted")
    assert now["OPEN 24 HRS"] == (first["OPEN 24 HOURS"][0], "assigned") and first["OPEN 24 HOURS"][0] >= 0
    assert now["cats"] == (first["cat"][0], "assigned") and first["cat"][0] >= 0
    assert now["Quantum chromodynamics lecture"] == (-1, "assigned")  # like nothing: unclustered
    assert {r["cluster_id"]: r["label"] for r in after if r["cluster_id"] in names} == names
    joined = next(m for r in after for m in r["members"] if m["text"] == "cats")
    assert 0.8 <= joined["probability"] <= 1.0  # an assigned member's similarity to its nearest fitted one


def test_the_same_sequence_of_runs_gives_the_same_clusters(tmp_path, embed):
    outputs = []
    for name in ("a", "b"):
        cache = tmp_path / name
        run(cache, write_shards(cache, FIRST, embed), "auto")
        outputs.append(run(cache, write_shards(cache, ADDED, embed), "never")[0])
    assert outputs[0] == outputs[1]


def test_always_gives_the_clusters_of_a_from_scratch_fit_with_ids_carried_over(tmp_path, embed):
    incremental = tmp_path / "incremental"
    before, _ = run(incremental, write_shards(incremental, FIRST, embed), "never")
    refit, stats = run(incremental, write_shards(incremental, ADDED, embed), "always")
    assert stats["refit"] and stats["refit_reason"] == "labels.refit is always"

    scratch = tmp_path / "scratch"
    fresh, _ = run(scratch, write_shards(scratch, {**FIRST, **ADDED}, embed), "always")
    assert partition(refit) == partition(fresh)
    assert {m["membership"] for r in refit for m in r["members"]} == {"fitted"}
    probabilities = lambda records: {(m["item"], m["text"]): m["probability"] for r in records for m in r["members"]}  # noqa: E731
    assert probabilities(refit) == probabilities(fresh)
    # a cluster that survives the refit keeps its id and name
    old = {frozenset(m["text"] for m in r["members"]): (r["cluster_id"], r["label"]) for r in before if r["cluster_id"] >= 0}
    for r in refit:
        texts = frozenset(m["text"] for m in r["members"])
        for members, (cluster_id, label) in old.items():
            if members <= texts:
                assert (r["cluster_id"], r["label"]) == (cluster_id, label)


def test_auto_refits_when_too_many_new_texts_join_no_cluster(tmp_path, embed):
    files = write_shards(tmp_path, FIRST, embed)
    run(tmp_path, files, "auto")
    strangers = {"0002": {"ocr": {"Quantum chromodynamics lecture": 1, "Quantum chromodynamics lectures": 1, "tax return form 1040": 1}}}
    files = write_shards(tmp_path, strangers, embed)
    kept, stats = run(tmp_path, files, "never")  # never: left unclustered, however many
    assert not stats["refit"] and membership(kept)["Quantum chromodynamics lecture"] == (-1, "assigned")

    refit, stats = run(tmp_path, files, "auto", refit_unassigned_share=0.1)
    assert stats["refit"] and "joined no cluster since the last fit" in stats["refit_reason"]
    now = membership(refit)
    assert now["Quantum chromodynamics lecture"][0] == now["Quantum chromodynamics lectures"][0] >= 0  # the refit found their cluster
    assert {how for _, how in now.values()} == {"fitted"}


def test_removed_and_changed_shards_leave_the_clusters(tmp_path, embed):
    files = write_shards(tmp_path, {**FIRST, **ADDED}, embed)
    run(tmp_path, files, "always")
    (tmp_path / "embed" / "0002.jsonl").unlink()
    records, stats = run(tmp_path, sorted(tmp_path.glob("embed/*.jsonl")), "never")
    texts = set(membership(records))
    assert "cats" not in texts and "OPEN 24 HRS" not in texts  # gone with their shard
    assert sorted(texts) == sorted(p.text for p in load_points(sorted(tmp_path.glob("embed/*.jsonl"))))
    sizes = {r["label"]: r["size"] for r in records}
    assert sizes["person"] == 9


def test_changed_fit_options_refit_and_a_lost_state_starts_again(tmp_path, embed):
    files = write_shards(tmp_path, FIRST, embed)
    first, _ = run(tmp_path, files, "never")
    _, stats = run(tmp_path, files, "never", min_similarity=0.6)
    assert stats["refit"] and stats["refit_reason"] == "the fit options changed"
    state_path(tmp_path / "clusters.jsonl").unlink()
    again, stats = run(tmp_path, files, "never")
    assert stats["refit"] and stats["refit_reason"] == "no earlier fit"
    assert partition(again) == partition(first)


def test_recluster_command_refits_the_cache_of_a_run(demo_run, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(demo_run / "cache", cache)
    before = list(read_jsonl(cache / "clusters.jsonl", "cluster"))
    result = shardlens_cli("recluster", str(cache), cwd=demo_run)
    assert result.returncode == 0, result.stderr
    assert "run `snakemake` to update the catalog and the exports" in result.stdout
    after = list(read_jsonl(cache / "clusters.jsonl", "cluster"))
    assert partition(after) == partition(before)
    assert [(r["cluster_id"], r["label"]) for r in after] == [(r["cluster_id"], r["label"]) for r in before]


def test_recluster_without_a_run_is_one_line(tmp_path):
    result = shardlens_cli("recluster", str(tmp_path / "nothing"), cwd=tmp_path)
    one_line_error(result, "manifest.json does not exist")


def test_fit_max_texts_fits_the_most_frequent_texts_and_the_rest_join_by_assignment(tmp_path, embed):
    """HDBSCAN fits the 4 most frequent texts of each item group; the others are assigned at once
    (membership 'assigned'); the result does not depend on the order of the files, `always` is the
    same capped fit, and `auto` does not count the fit's own left-out texts as new."""
    files = write_shards(tmp_path / "a", FIRST, embed)
    capped, stats = run(tmp_path / "a", files, "auto", fit_max_texts=4)
    assert stats["refit"] and stats["refit_reason"] == "no earlier fit"
    members = membership(capped)
    fitted = sorted(text for text, (_, how) in members.items() if how == "fitted")
    # captions by occurrences: person 9, car 2, cat 2, automobile 1 | kitten 1 (ties by sha256);
    # OCR texts all once: the 4 with the smallest sha256
    ocr = sorted(t for kinds in FIRST.values() for t in kinds["ocr"])
    expected_ocr = sorted(ocr, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:4]
    captions = sorted({t for kinds in FIRST.values() for t in kinds["caption"]})
    counts = {t: sum(kinds["caption"].get(t, 0) for kinds in FIRST.values()) for t in captions}
    expected_captions = sorted(captions, key=lambda t: (-counts[t], hashlib.sha256(t.encode()).hexdigest()))[:4]
    assert fitted == sorted(expected_ocr + expected_captions)
    assert {how for text, (_, how) in members.items() if text not in fitted} == {"assigned"}
    assert len(members) == len(ocr) + len(captions)

    # the files in another order (another folder, names swapped): the same clusters
    other = tmp_path / "b"
    swapped = {"0000": FIRST["0001"], "0001": FIRST["0000"]}
    again, _ = run(other, write_shards(other, swapped, embed), "auto", fit_max_texts=4)
    assert partition(again) == partition(capped) and membership(again) == members

    # a run with nothing new does not refit, though the fit left texts out
    rerun, stats = run(tmp_path / "a", files, "auto", fit_max_texts=4)
    assert not stats["refit"] and membership(rerun) == members
    # `always`: the same capped fit
    always, stats = run(tmp_path / "a", files, "always", fit_max_texts=4)
    assert stats["refit"] and partition(always) == partition(capped)
