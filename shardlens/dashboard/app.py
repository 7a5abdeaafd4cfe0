"""The review dashboard (Streamlit): triage machine clusters and override labels.

Run it with ``shardlens review`` (or ``python -m streamlit run shardlens/dashboard/app.py --
--db results/annotations.sqlite --reviews reviews/reviews.sqlite [--images DIR]``). Paths come
from these arguments, else from ``SHARDLENS_DB`` / ``SHARDLENS_REVIEWS`` / ``SHARDLENS_IMAGES``,
else the workflow's defaults.

Access: with ``SHARDLENS_REVIEW_TOKEN`` set, each session shows only a token prompt (or takes
``?token=`` from its URL, then drops it from the address bar) until it has presented the token;
before that no other widget exists, so no review can be recorded. Served on a non-loopback
address without a token, the app refuses to show anything.

Views: clusters, riskiest first (:mod:`shardlens.risk`; or by size), with sample thumbnails, each
cluster's risk and audit precision estimate, and the overall estimate; a review queue over filtered items with
"Accept & next" (key A); one image with its boxes, captions, OCR lines and gate decision; a
2-D map of the text embeddings. Every override is written with
:func:`shardlens.reviews.record_reviews` (the CSV re-import's validation), a verdict on a whole
cluster with :func:`shardlens.reviews.record_cluster_review`, so the catalog and a fresh export
show it at once. A cluster is accepted as a whole only after an audit ("Audit and accept",
:mod:`shardlens.audits`): k random items of it are shown with Accept / Reject first, and the
bulk accept is enabled only when all k were accepted. The audit is offered only where it can save
actions, on more than k + 1 unreviewed items (:func:`shardlens.audits.audit_saves_actions`); a
smaller cluster is reviewed item by item.

Propagated labels (:mod:`shardlens.propagation`: a reviewed cluster's or a reviewed look-alike's
label on an item nobody reviewed) are marked where they show, with the review they come from;
the "Label source" filter lists them, and "Accept propagated" / "Reject propagated" turn every
filtered one into a review of its own.

This script is the entry point: page set-up, the access gate (:mod:`.access`), then the view
chosen in the sidebar (:mod:`.views`); settings, session state and writing reviews are in
:mod:`.state`.
"""

from __future__ import annotations

import sys

import streamlit as st

from shardlens.dashboard import queries as q
from shardlens.dashboard.access import access_gate
from shardlens.dashboard.state import VIEWS, init_state, parse_settings, show_flash
from shardlens.dashboard.thumbnails import ThumbnailCache
from shardlens.dashboard.views.clusters import clusters_view
from shardlens.dashboard.views.image import image_view
from shardlens.dashboard.views.map import map_view
from shardlens.dashboard.views.queue import queue_view
from shardlens.dashboard.views.sidebar import sidebar


def main() -> None:
    st.set_page_config(page_title="shardlens review", page_icon="🔎", layout="wide")
    st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem} [data-testid='stSidebarHeader']{height:1rem}</style>")
    settings = parse_settings(sys.argv[1:])
    access_gate(settings)
    if not settings.db.exists():
        st.error(f"catalog {settings.db} does not exist: run `snakemake` first (or pass --db)")
        st.stop()
    init_state()
    thumbs = ThumbnailCache(settings.thumbnails, settings.images)
    conn = q.open_catalog(settings.db)
    try:
        f = sidebar(conn, settings)
        show_flash()
        view = st.session_state.get("view", VIEWS[0])
        if view == "Clusters":
            clusters_view(conn, settings, thumbs)
        elif view == "Review queue":
            queue_view(conn, settings, thumbs, f)
        elif view == "Image":
            image_view(conn, settings, thumbs)
        else:
            map_view(conn, settings, f)
    finally:
        conn.close()


main()
