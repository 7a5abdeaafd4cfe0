"""The map view: a 2-D projection (PCA, or UMAP when installed) of the text embeddings, coloured by
cluster, with a searchable legend."""

from __future__ import annotations

import colorsys
import html
import importlib.util

import streamlit as st

from shardlens.dashboard import queries as q
from shardlens.dashboard.state import Settings, catalog_signature


@st.cache_data(show_spinner=False, max_entries=16)
def _map_points(db: str, signature: tuple, limit: int, method: str, cluster_id: int | None) -> list[dict]:
    conn = q.open_catalog(db)
    try:
        sample = q.embedding_sample(conn, limit, cluster_id)
    finally:
        conn.close()
    if not sample:
        return []
    import numpy as np

    coords = q.project_2d(np.stack([s["vector"] for s in sample]), method=method)
    return [
        {"x": float(x), "y": float(y), "text": s["text"], "label": s["label"], "cluster": s["cluster_id"], "kind": s["kind"], "count": s["count"]}
        for s, (x, y) in zip(sample, coords)
    ]


def cluster_color(cluster_id: int) -> str:
    """A colour per cluster, the same in every sample and on the legend (golden-ratio hues in two
    lightnesses, so neighbouring ids differ); the 'unclustered' bucket is grey."""
    if cluster_id < 0:
        return "#8e8e93"
    hue = (cluster_id * 0.6180339887498949) % 1.0
    r, g, b = colorsys.hls_to_rgb(hue, (0.42, 0.58)[cluster_id % 2], 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def legend_matches(query: str, cluster_id: int, label: str) -> bool:
    """Legend search: a part of the cluster's label (any case), or its number (with or without #)."""
    query = query.strip().lower()
    return not query or query in label.lower() or query.lstrip("#") == str(cluster_id)


def map_view(conn, settings: Settings, f: q.ItemFilter) -> None:
    import altair as alt
    import pandas as pd

    st.markdown("### Map of the text embeddings")
    has_umap = importlib.util.find_spec("umap") is not None
    cols = st.columns([2, 2, 3])
    limit = cols[0].slider("Points (at most)", 200, 5000, 3000, step=100, key="m_limit")
    method = cols[1].radio("Projection", ("pca", "umap") if has_umap else ("pca",), horizontal=True, key="m_method", format_func=str.upper)
    if not has_umap:
        cols[2].caption("UMAP: pip install umap-learn (PCA is used otherwise)")
    points = _map_points(str(settings.db), catalog_signature(settings.db), int(limit), method, f.cluster_id)
    if not points:
        st.info("no embeddings in the catalog")
        return
    frame = pd.DataFrame(points)
    frame["name"] = [f"{label} #{cid}" if cid >= 0 else "unclustered" for label, cid in zip(frame["label"], frame["cluster"])]
    legend = (
        frame.groupby(["cluster", "name", "label"], as_index=False)
        .size()
        .sort_values(["size", "cluster"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )
    query = st.text_input("Find a cluster on the map (part of its label, or its number)", key="m_find", placeholder="e.g. exit or #12")
    legend["match"] = [legend_matches(query, cid, label) for cid, label in zip(legend["cluster"], legend["label"])]
    matched = set(legend.loc[legend["match"], "cluster"])
    frame["match"] = frame["cluster"].isin(matched)
    other = "other clusters"
    frame["shade"] = frame["name"].where(frame["match"], other)
    domain = list(legend["name"]) + [other]
    palette = [cluster_color(int(cid)) for cid in legend["cluster"]] + ["#d1d1d6"]
    chart = (
        alt.Chart(frame)
        .mark_circle(size=60)
        .encode(
            x=alt.X("x:Q", title="PC 1" if method == "pca" else "UMAP 1"),
            y=alt.Y("y:Q", title="PC 2" if method == "pca" else "UMAP 2"),
            color=alt.Color("shade:N", scale=alt.Scale(domain=domain, range=palette), legend=None),
            opacity=alt.condition("datum.match", alt.value(0.85), alt.value(0.25)),
            order=alt.Order("match:O"),  # found clusters on top
            tooltip=["text:N", "label:N", "cluster:Q", "kind:N", "count:Q"],
        )
        .properties(height=620)
        .interactive()
    )
    n_clusters = int((legend["cluster"] >= 0).sum())
    total = q.count_clusters(conn)
    left, right = st.columns([3, 1])
    with left:
        st.altair_chart(chart, width="stretch")
        st.caption(
            f"{len(frame):,} distinct texts of {n_clusters:,} of the {total:,} clusters"
            + (" and the unclustered" if (legend["cluster"] < 0).any() else "")
            + " · hover a point for its text"
        )
    with right:
        shown = legend[legend["match"]]
        st.markdown(
            f'<div class="sl-legend-head" data-matches="{len(shown)}" data-clusters="{n_clusters}">'
            f"<b>Legend</b> · {len(shown):,} of {len(legend):,}" + (f" match {html.escape(query.strip())!s}" if query.strip() else "") + "</div>",
            unsafe_allow_html=True,
        )
        items = "".join(
            f'<div class="sl-legend-item" data-cluster-id="{int(cid)}" data-points="{int(size)}" style="white-space:nowrap;overflow:hidden;text-overflow:ellipsis">'
            f'<span style="display:inline-block;width:0.75em;height:0.75em;border-radius:50%;margin-right:0.4em;background:{cluster_color(int(cid))}"></span>'
            f'{html.escape(name)} <span style="color:#8e8e93">({int(size):,})</span></div>'
            for cid, name, size in zip(shown["cluster"], shown["name"], shown["size"])
        )
        st.markdown(
            f'<div class="sl-legend" style="max-height:600px;overflow-y:auto;font-size:0.85rem;line-height:1.5">{items or "no cluster matches"}</div>',
            unsafe_allow_html=True,
        )
