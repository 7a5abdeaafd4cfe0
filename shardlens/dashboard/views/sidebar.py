"""The sidebar: the catalog's counts, the view, the reviewer and the item filters."""

from __future__ import annotations

import streamlit as st

from shardlens.dashboard import queries as q
from shardlens.dashboard.state import LABEL_SOURCE_CHOICES, VIEWS, Settings


def sidebar(conn, settings: Settings) -> q.ItemFilter:
    with st.sidebar:
        st.markdown("## shardlens review")
        counts = q.summary(conn)
        st.caption(
            f"{counts['images']:,} images · {counts['regions']:,} regions · {counts['lines']:,} OCR lines · "
            f'<span class="sl-count-clusters" data-count="{counts["clusters"]}">{counts["clusters"]:,} clusters</span> · '
            f'{counts["reviews"]:,} reviews · <span class="sl-count-propagated" data-count="{counts["propagated"]}">'
            f"{counts['propagated']:,} propagated</span>",
            unsafe_allow_html=True,
        )
        st.radio("View", VIEWS, key="view", horizontal=True)
        st.text_input("Reviewer", key="reviewer")
        st.markdown("#### Filters")
        options = q.cluster_options(conn)
        ids = [None] + [cid for cid, _, _ in options]
        labels = {cid: f"{label} ({size:,}) #{cid}" for cid, label, size in options}
        chosen = st.session_state.get("f_cluster")
        if chosen is not None and chosen not in labels:
            info = q.cluster_info(conn, chosen)
            ids.append(chosen)
            labels[chosen] = f"{info['label'] if info else '?'} #{chosen}"
        st.selectbox("Cluster", ids, key="f_cluster", format_func=lambda c: "any" if c is None else labels.get(c, str(c)))
        st.text_input("Label (machine or reviewed)", key="f_label")
        st.selectbox("Has text", ("any", "with OCR text", "without OCR text"), key="f_has_text")
        st.checkbox("Unreviewed only", key="f_unreviewed")
        near = q.near_duplicate_counts(conn)
        st.checkbox(
            f"In near-duplicate groups only ({near['images']:,} images)", key="f_near", disabled=not near["images"],
            help="items of images that look like other images (perceptual hash within dedupe.max_distance bits); a review of one reaches its group",
        )  # fmt: skip
        st.selectbox(
            "Label source", tuple(LABEL_SOURCE_CHOICES), key="f_source",
            help="machine: the item's own label · propagated: a reviewed cluster's or look-alike's label (↻) · reviewed: a person's review",
        )  # fmt: skip
        st.slider("Confidence", 0.0, 1.0, key="f_conf", step=0.01)
        st.text_input("Search OCR text", key="f_search", placeholder="e.g. exit")
        st.selectbox("Items", ("regions and lines", "regions", "lines"), key="f_item")
        st.selectbox("Order", ("riskiest first", "least confident first", "most confident first", "by image"), key="f_order")
        if settings.token is not None:
            st.caption("access: token required for every session")
        st.caption(f"catalog: {settings.db}\n\nreviews: {settings.reviews}\n\nimages: {settings.images or 'unknown (placeholders)'}")
    has_text = {"any": None, "with OCR text": True, "without OCR text": False}[st.session_state["f_has_text"]]
    lo, hi = st.session_state["f_conf"]
    return q.ItemFilter(
        cluster_id=st.session_state.get("f_cluster"),
        label=(st.session_state.get("f_label") or "").strip() or None,
        has_text=has_text,
        unreviewed_only=bool(st.session_state.get("f_unreviewed")),
        min_confidence=float(lo),
        max_confidence=float(hi),
        text_search=(st.session_state.get("f_search") or "").strip() or None,
        item={"regions and lines": None, "regions": "region", "lines": "text"}[st.session_state["f_item"]],
        label_source=LABEL_SOURCE_CHOICES[st.session_state.get("f_source") or "any"],
        near_duplicates_only=bool(st.session_state.get("f_near")),
    )
