"""Incremental clusters (labels.refit): new texts join existing clusters without a refit, ids and
names stay stable, `always` gives the clusters of a from-scratch fit, and the same sequence of
runs gives the same clusters. Real all-MiniLM-L6-v2 vectors, real HDBSCAN, real state files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from shardlens.cluster_fit import load_points
from shardlens.cluster_state import state_path
from shardlens.clustering import run_clustering
from shardlens.records import SCHEMA_VERSION, read_jsonl, write_jsonl
from shardlens.vectors import encode_vector

from conftest import one_line_error, shardlens_cli

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
    from shardlens.options import EmbedOptions

    return make_text_embedder(EmbedOptions.from_values(), threads=2).encode


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


def scores(records: list[dict]) -> dict[tuple[str, str], tuple[str, float]]:
    return {(m["item"], m["text"]): (m["membership"], m["outlier_score"]) for r in records for m in r["members"]}


# OCR texts seen once each, no two sharing a vector (the embedder is uncased: "EXIT" and "Exit"
# would), so that no fitted point is infinitely dense and the outlier scores are graded
ONCE = {
    "0000": {
        "ocr": {t: 1 for t in ("OPEN 24 HOURS", "open all night", "open daily", "EXIT", "EMERGENCY EXIT", "fire exit", "Main Street", "Main St", "High Street")}
    }
}
ONCE_ADDED = [{"ocr": {"OPEN 24 HRS": 1, "Quantum chromodynamics lecture": 1}}, {"ocr": {"exit only": 1, "Main Road": 1}}]


def test_assigned_texts_get_an_outlier_score_whatever_the_order_they_arrive_in(tmp_path, embed):
    """Every member has an outlier score in [0, 1], noise included; a text that joins without a
    refit gets one against the fit, the same whether it arrives with the others or alone, in
    either order; the fitted texts keep theirs."""
    together = tmp_path / "together"
    fitted, _ = run(together, write_shards(together, ONCE, embed), "never")
    after, _ = run(together, write_shards(together, {"0001": {"ocr": {**ONCE_ADDED[0]["ocr"], **ONCE_ADDED[1]["ocr"]}}}, embed), "never")

    apart = tmp_path / "apart"  # the same new texts in two later runs, the second half first
    run(apart, write_shards(apart, ONCE, embed), "never")
    run(apart, write_shards(apart, {"0002": ONCE_ADDED[1]}, embed), "never")
    alone, _ = run(apart, write_shards(apart, {"0001": ONCE_ADDED[0]}, embed), "never")

    got = scores(after)
    assert all(0.0 <= s <= 1.0 for _, s in got.values())
    assert any(r["cluster_id"] == -1 and r["members"] for r in after)  # noise is scored too
    assigned = {key: s for key, (how, s) in got.items() if how == "assigned"}
    assert set(assigned) == {("text", t) for half in ONCE_ADDED for t in half["ocr"]}
    assert {key: s for key, (how, s) in scores(alone).items() if how == "assigned"} == assigned
    assert {key: v for key, v in got.items() if v[0] == "fitted"} == scores(fitted)  # joining changes no fitted score
    assert any(0.0 < s < 1.0 for s in assigned.values())  # graded, not a flag

    # with a repeated text in the fit (here "person", "cat", "car" and texts that differ in case
    # only): such a node's lambda_max is infinite, and a later text under it scores the limit 1
    files = write_shards(tmp_path / "repeated", FIRST, embed)
    run(tmp_path / "repeated", files, "never")
    repeated, _ = run(tmp_path / "repeated", write_shards(tmp_path / "repeated", ADDED, embed), "never")
    assert {k: s for k, (how, s) in scores(repeated).items() if how == "assigned" and k[1] in ("cats", "OPEN 24 HRS")} == {
        ("region", "cats"): 1.0,
        ("text", "OPEN 24 HRS"): 1.0,
    }


def test_the_outlier_score_of_an_assigned_text_is_hdbscans_formula_at_its_nearest_fitted_member(tmp_path, embed):
    """The score of a text that joins later, recomputed from a direct hdbscan fit of the fitted
    texts: its mutual reachability distance to the member it joins (with that member's core
    distance), against the largest lambda of the tree node that member leaves and below."""
    import hdbscan

    from shardlens.cluster_fit import glosh

    run(tmp_path, write_shards(tmp_path, ONCE, embed), "never")
    new = {**ONCE_ADDED[0]["ocr"], **ONCE_ADDED[1]["ocr"]}
    records, _ = run(tmp_path, write_shards(tmp_path, {"0001": {"ocr": new}}, embed), "never")
    texts = sorted(ONCE["0000"]["ocr"])  # the fit's order; each text once: one copy each
    vectors = np.stack(embed(texts)).astype(np.float64)  # 9 texts: fewer than pca_dims, no PCA
    model = hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1, approx_min_span_tree=False).fit(vectors)
    tree = model.condensed_tree_._raw_tree
    clustered = [texts.index(m["text"]) for r in records if r["cluster_id"] >= 0 for m in r["members"] if m["membership"] == "fitted"]
    got = {m["text"]: m["outlier_score"] for r in records for m in r["members"] if m["membership"] == "assigned"}
    expected = {}
    for text, vector in zip(sorted(new), embed(sorted(new))):
        vector = vector.astype(np.float64)
        nearest = max(clustered, key=lambda i: float(vectors[i] @ vector))  # the assignment's choice
        node = tree["parent"][tree["child"] == nearest][0]
        below, frontier = {node}, [node]  # the node and its descendants
        while frontier:
            frontier = [c for c in tree["child"][np.isin(tree["parent"], frontier)] if c >= len(texts)]
            below.update(frontier)
        lambda_max = tree["lambda_val"][np.isin(tree["parent"], list(below))].max()
        core = np.sort(np.linalg.norm(vectors - vectors[nearest], axis=1))[1]  # min_samples 1: its nearest other point
        reach = max(float(np.linalg.norm(vector - vectors[nearest])), core)
        expected[text] = glosh(1.0 / reach, lambda_max)
    assert got == pytest.approx(expected, abs=2e-6)
    assert any(0.0 < s < 1.0 for s in got.values())


def test_a_state_written_before_outlier_scores_is_upgraded_and_refit_in_one_line(tmp_path, embed):
    """A version-1 state (no outlier columns, no fit spaces): the run adds them, refits without
    reading an embedding file again, says why in its one log line, and keeps ids and names."""
    import sqlite3

    files = write_shards(tmp_path, FIRST, embed)
    before, _ = run(tmp_path, files, "never")
    conn = sqlite3.connect(state_path(tmp_path / "clusters.jsonl"))
    conn.execute("DROP TABLE fit_spaces")
    for column in ("outlier_score", "lambda_max", "core_distance", "copies"):
        conn.execute(f"ALTER TABLE texts DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'version'")
    conn.commit()
    conn.close()
    lines: list[str] = []
    stats = run_clustering(files, tmp_path / "clusters.jsonl", {**OPTIONS, "refit": "never"}, log=lines.append)
    assert stats["refit"] and stats["refit_reason"] == "the state was written by an older shardlens: version 1, without outlier scores"
    assert stats["embedding_files_read"] == 0
    assert (
        [line for line in lines if "refit" in line]
        == [line for line in lines if line.startswith("cluster [never]") and "refit (the state was written by an older shardlens" in line]
        != []
    )
    after = list(read_jsonl(tmp_path / "clusters.jsonl", "cluster"))
    assert [(r["cluster_id"], r["label"], [m["text"] for m in r["members"]]) for r in after] == [
        (r["cluster_id"], r["label"], [m["text"] for m in r["members"]]) for r in before
    ]
    assert scores(after) == scores(before)
    again = run_clustering(files, tmp_path / "clusters.jsonl", {**OPTIONS, "refit": "never"}, log=lambda _m: None)
    assert not again["refit"]  # upgraded once
