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
bulk accept is enabled only when all k were accepted.

Propagated labels (:mod:`shardlens.propagation`: a reviewed cluster's or a reviewed look-alike's
label on an item nobody reviewed) are marked where they show, with the review they come from;
the "Label source" filter lists them, and "Accept propagated" / "Reject propagated" turn every
filtered one into a review of its own.
"""

from __future__ import annotations

import argparse
import colorsys
import html
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from shardlens.dashboard import queries as q
from shardlens.audits import accept_after_audit, draw_audit, get_audit, open_audit, review_audit_item
from shardlens.dashboard.launch import MIN_TOKEN_LENGTH, TOKEN_ENV, guess_audit_size, guess_images_root, is_loopback, token_matches
from shardlens.dashboard.thumbnails import COLORS, Box, ThumbnailCache, default_cache_dir
from shardlens.propagation import review_of_propagated
from shardlens.reviews import Review, ReviewError, record_cluster_review, record_reviews

VIEWS = ("Clusters", "Review queue", "Image", "Map")
QUEUE_PAGE = 20
THUMB = 320  # cluster samples: drawn at 320 px, shown 4 in a row (about 200 px wide at 1280 px)
SAMPLES = 4
LARGE = 1024
SOURCE = "dashboard"


@dataclass(frozen=True)
class Settings:
    db: Path
    reviews: Path
    images: Path | None
    thumbnails: Path
    token: str | None = field(default=None, repr=False)  # what each session must present
    audit_size: int | None = None  # reviews.audit_size (None: the schema's default)


def parse_settings(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="shardlens-dashboard")
    parser.add_argument("--db", default=os.environ.get("SHARDLENS_DB", "results/annotations.sqlite"))
    parser.add_argument("--reviews", default=os.environ.get("SHARDLENS_REVIEWS", "reviews/reviews.sqlite"))
    parser.add_argument("--images", default=os.environ.get("SHARDLENS_IMAGES"))
    parser.add_argument("--thumbnails", default=os.environ.get("SHARDLENS_THUMBNAILS"))
    parser.add_argument("--audit-size", type=int, default=os.environ.get("SHARDLENS_AUDIT_SIZE"))
    args, _ = parser.parse_known_args(argv)
    db = Path(args.db).resolve()
    images = Path(args.images).resolve() if args.images else guess_images_root(db)
    thumbs = Path(args.thumbnails).resolve() if args.thumbnails else default_cache_dir(db)
    token = (os.environ.get(TOKEN_ENV) or "").strip() or None
    audit_size = int(args.audit_size) if args.audit_size else guess_audit_size(db)
    return Settings(db, Path(args.reviews).resolve(), images, thumbs, token, audit_size)


# ------------------------------------------------------------------------------ plumbing


def catalog_signature(db: Path) -> tuple:
    """Changes whenever the catalog does (a rebuild, a mirrored review): the key of cached counts."""
    out = []
    for path in (db, Path(f"{db}-wal")):
        try:
            stat = path.stat()
            out.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=512)
def _count_items(db: str, signature: tuple, f: q.ItemFilter) -> int:
    conn = q.open_catalog(db)
    try:
        return q.count_items(conn, f)
    finally:
        conn.close()


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


def flash(kind: str, message: str) -> None:
    st.session_state.setdefault("flash", []).append((kind, message))


def show_flash() -> None:
    for kind, message in st.session_state.pop("flash", []):
        getattr(st, kind)(message)


def reviewer() -> str | None:
    return (st.session_state.get("reviewer") or "").strip() or None


def submit(settings: Settings, reviews: list[Review], what: str) -> bool:
    """Write reviews through the validated path; report the outcome on the next run."""
    if not reviews:
        flash("info", f"{what}: nothing to record")
        return False
    try:
        n = record_reviews(reviews, settings.db, settings.reviews, source=SOURCE)
    except ReviewError as exc:
        flash("error", str(exc))
        return False
    flash("success", f"{what}: {n} review(s) recorded")
    return True


def item_review(item: dict, status: str, label: str | None = None) -> Review:
    """The review of one item: accepting a propagated label records that label (what the page
    shows), accepting any other item its machine label."""
    if status == "accepted" and item.get("label_source") == "propagated":
        return review_of_propagated(item, "accepted", reviewer())
    if status == "accepted":
        label = item.get("machine_label")
    elif status == "rejected":
        label = None
    return Review(item["image_id"], item.get("region_id"), item.get("line_no"), status, label, reviewer())


def item_name(item: dict) -> str:
    return f"region {item['region_id']}" if item.get("region_id") is not None else f"line {item['line_no']}"


def box_color(status: str | None) -> str:
    return COLORS.get(status or "machine", COLORS["machine"])


LABEL_SOURCE_CHOICES = {"any": None, "machine": "machine", "propagated": "propagated", "reviewed": "review"}


def origin_name(key: str | None) -> str:
    """Where a propagated label comes from, for people: a cluster review, or a reviewed item."""
    if not key:
        return "?"
    parts = key.split("/")
    if parts[0] == "cluster" and len(parts) == 3:
        return f"the review of cluster {parts[2]}"
    if len(parts) == 3 and parts[1] in ("region", "line"):
        return f"the review of {parts[1]} {parts[2]} of image {parts[0][:12]}…"
    return key


def propagated_marker(item: dict) -> str:
    """The visible mark of a propagated label (HTML), naming the review it comes from; '' for an
    item whose label is its own or a person's."""
    if item.get("label_source") != "propagated":
        return ""
    origin = item.get("propagated_from") or ""
    label = item.get("final_label") or ""
    return (
        f'<span class="sl-propagated" data-from="{html.escape(origin)}" data-label="{html.escape(label)}" '
        'style="background:#efe3ff;color:#5b2a86;border-radius:4px;padding:1px 6px;white-space:nowrap">'
        f"↻ propagated <b>{html.escape(label)}</b> from {html.escape(origin_name(origin))}</span>"
    )


def source_text(item: dict) -> str:
    """label_source for a table cell: machine, review, or 'propagated ← origin'."""
    if item.get("label_source") == "propagated":
        return f"↻ propagated ← {origin_name(item.get('propagated_from'))}"
    return item.get("label_source") or "machine"


# ---------------------------------------------------------------------------- callbacks


def go_image(image_id: str) -> None:
    st.session_state["image_id"] = image_id
    st.session_state["view"] = "Image"


def go_cluster_queue(cluster_id: int) -> None:
    st.session_state["f_cluster"] = cluster_id
    st.session_state["view"] = "Review queue"
    st.session_state["cursor"] = 0


def move_cursor(step: int, total: int) -> None:
    st.session_state["cursor"] = max(0, min(total - 1, st.session_state.get("cursor", 0) + step))
    st.session_state["table_nonce"] = st.session_state.get("table_nonce", 0) + 1


def review_current(settings: Settings, item: dict, status: str, total: int, label_key: str | None = None) -> None:
    label = None
    if status == "relabeled":
        label = (st.session_state.get(label_key) or "").strip()
        if not label:
            flash("warning", "type the new label first")
            return
    if submit(settings, [item_review(item, status, label)], f"{status} {item_name(item)} of {item.get('path')}"):
        if label_key:
            st.session_state[label_key] = ""
        # with 'unreviewed only' the reviewed item leaves the list and the next one takes its place
        if not st.session_state.get("f_unreviewed"):
            move_cursor(+1, total)
        else:
            st.session_state["table_nonce"] = st.session_state.get("table_nonce", 0) + 1


def select_row(key: str, page_start: int) -> None:
    state = st.session_state.get(key)
    rows = state.selection.rows if state is not None else []
    if rows:
        st.session_state["cursor"] = page_start + rows[0]


def review_cluster(settings: Settings, cluster_id: int, status: str, label_key: str | None = None) -> None:
    """Accept (each unreviewed item's own label: people's decisions stand) or relabel (every
    item) a whole cluster; the verdict is kept as a cluster review, which later members follow."""
    label = None
    if status == "relabeled":
        label = (st.session_state.get(label_key) or "").strip()
        if not label:
            flash("warning", "type the cluster's new name first")
            return
    try:
        result = record_cluster_review(settings.db, settings.reviews, cluster_id, status, label, reviewer(), source=SOURCE)
    except ReviewError as exc:
        flash("error", str(exc))
        return
    what = f"accepted cluster {cluster_id}" if status == "accepted" else f"renamed cluster {cluster_id} to {label!r}"
    flash("success", f"{what}: {result.items} review(s) recorded; items that join it later follow ({result.review_key})")
    if label_key:
        st.session_state[label_key] = ""


def review_propagated(settings: Settings, f: q.ItemFilter, status: str) -> None:
    """Turn every propagated label the filter shows into a person's review: accepted (the
    propagated label) or rejected. Reviewed, they are never propagated over again."""
    conn = q.open_catalog(settings.db)
    try:
        items = q.propagated_items(conn, f)
    finally:
        conn.close()
    reviews = [review_of_propagated(item, status, reviewer()) for item in items]
    verb = "accepted" if status == "accepted" else "rejected"
    if submit(settings, reviews, f"{verb} {len(reviews)} propagated label(s)"):
        st.session_state["cursor"] = 0
        st.session_state["table_nonce"] = st.session_state.get("table_nonce", 0) + 1


def review_image_item(settings: Settings, item: dict, status: str, label_key: str) -> None:
    label = None
    if status == "relabeled":
        label = (st.session_state.get(label_key) or "").strip()
        if not label:
            flash("warning", f"type the new label of {item_name(item)} first")
            return
    if submit(settings, [item_review(item, status, label)], f"{status} {item_name(item)}"):
        st.session_state[label_key] = ""


def find_image_cb(settings: Settings) -> None:
    query = st.session_state.get("goto", "")
    conn = q.open_catalog(settings.db)
    try:
        found = q.find_image(conn, query)
    finally:
        conn.close()
    if found:
        st.session_state["image_id"] = found
    else:
        flash("warning", f"no image matches {query!r}")


# -------------------------------------------------------------------------------- views


def sidebar(conn, settings: Settings) -> q.ItemFilter:
    with st.sidebar:
        st.markdown("## shardlens review")
        counts = q.summary(conn)
        st.caption(
            f"{counts['images']:,} images · {counts['regions']:,} regions · {counts['lines']:,} OCR lines · "
            f'<span class="sl-count-clusters" data-count="{counts["clusters"]}">{counts["clusters"]:,} clusters</span> · '
            f'{counts["reviews"]:,} reviews · <span class="sl-count-propagated" data-count="{counts["propagated"]}">'
            f'{counts["propagated"]:,} propagated</span>',
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
        st.selectbox("Order", ("least confident first", "most confident first", "by image"), key="f_order")
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


def clusters_view(conn, settings: Settings, thumbs: ThumbnailCache) -> None:
    clusters = q.count_clusters(conn)
    total = q.count_cluster_rows(conn)  # cards: the clusters and the 'unclustered' bucket
    top = st.columns([4, 1, 1, 1, 2], vertical_alignment="bottom")
    bucket = " + unclustered" if total > clusters else ""
    order = st.session_state.get("c_order") or next(iter(CLUSTER_ORDER_CHOICES))
    top[0].markdown(
        f'### Clusters (<span class="sl-count-clusters" data-count="{clusters}">{clusters:,}</span>{bucket}, {order})',
        unsafe_allow_html=True,
    )
    size = top[4].selectbox("Clusters per page", (5, 10, 20, 50), index=1, key="c_size")
    top[4].selectbox("Order", tuple(CLUSTER_ORDER_CHOICES), key="c_order")
    per_cluster, overall = q.precision(conn)
    overall_precision_line(overall, len(per_cluster))
    pages = max(1, -(-total // size))
    page = min(st.session_state.get("c_page", 0), pages - 1)
    if top[1].button("◀ Prev", disabled=page == 0, key="c_prev"):
        page -= 1
    if top[2].button("Next ▶", disabled=page >= pages - 1, key="c_next"):
        page += 1
    st.session_state["c_page"] = page
    top[3].caption(f"page {page + 1} of {pages}")
    rows = q.triage_cluster_page(conn, page * size, size, order=CLUSTER_ORDER_CHOICES[order])
    samples = q.cluster_samples(conn, [r.cluster_id for r in rows], per_cluster=SAMPLES)
    verdicts = q.cluster_reviews(conn, [r.cluster_id for r in rows])
    risks = q.cluster_risks(conn, [r.cluster_id for r in rows])
    for row in rows:
        with st.container(border=True):
            cluster_card(conn, settings, thumbs, row, samples.get(row.cluster_id, []), verdicts.get(row.cluster_id))
            if row.cluster_id >= 0:
                triage_block(conn, settings, thumbs, row, risks.get(row.cluster_id), per_cluster.get(row.cluster_id))


def cluster_card(conn, settings: Settings, thumbs: ThumbnailCache, row: q.ClusterRow, samples: list[dict], verdict: dict | None = None) -> None:
    name = html.escape(row.label)
    bucket = row.cluster_id < 0
    badge = ""
    if verdict is not None:
        said = "accepted" if verdict["status"] == "accepted" else f"relabeled {html.escape(repr(verdict['label']))}"
        by = f" by {html.escape(verdict['reviewer'])}" if verdict["reviewer"] else ""
        badge = (
            f' &nbsp;·&nbsp; <span class="sl-cluster-review" data-status="{verdict["status"]}">{said} as a whole{by}; '
            "items that join it later follow</span>"
        )
    st.markdown(
        f'<div class="sl-cluster" data-cluster-id="{row.cluster_id}" data-size="{row.size}" data-items="{row.items}" '
        f'data-texts="{row.texts}" data-reviewed="{row.reviewed}"><span style="font-size:1.2rem;font-weight:600">{name}</span> '
        f'&nbsp;·&nbsp; <span class="sl-items">{row.items:,} items</span> &nbsp;·&nbsp; {row.reviewed:,} reviewed '
        f"&nbsp;·&nbsp; size {row.size:,} &nbsp;·&nbsp; {row.texts:,} texts &nbsp;·&nbsp; cluster {row.cluster_id}{badge}</div>",
        unsafe_allow_html=True,
    )
    texts = q.cluster_texts(conn, row.cluster_id, 8)
    keywords = ", ".join(row.keywords) if row.keywords else "—"
    note = " · no region or OCR line reads these texts (label candidates only)" if row.items == 0 else ""
    st.caption(
        ("left unclustered by HDBSCAN: each text keeps its own words as label · " if bucket else f"keywords: {keywords} · ")
        + "texts: " + ", ".join(f"{t['text']} ({t['count']})" for t in texts) + note
    )
    cells = st.columns(SAMPLES)
    for i, sample in enumerate(samples):
        with cells[i % SAMPLES]:
            box = [Box(tuple(sample["bbox"]), "", COLORS["highlight"], 4)] if sample.get("bbox") else []
            path = thumbs.get(sample["image_id"], sample.get("path"), THUMB, box, sample.get("width"), sample.get("height"))
            st.image(str(path), caption=f"{sample['text']} · {sample.get('path') or sample['image_id'][:12]}", width="stretch")
            st.button("Open", key=f"open-{row.cluster_id}-{i}", type="tertiary", on_click=go_image, args=(sample["image_id"],))
    buttons = st.columns([1, 1, 3], vertical_alignment="bottom")
    buttons[0].button(
        "Review items", key=f"queue-{row.cluster_id}", on_click=go_cluster_queue, args=(row.cluster_id,), disabled=row.items == 0, width="stretch"
    )
    if bucket:
        buttons[1].caption("no common label here: review its items one by one")
        return
    buttons[1].button(
        "Audit and accept", key=f"audit-c{row.cluster_id}", disabled=row.items == 0 or row.reviewed >= row.items, width="stretch",
        help="review a random sample of this cluster's unreviewed items first; when all of them are accepted, accept the cluster "
        "(each unreviewed item's own machine label; items that join the cluster later follow)",
        on_click=start_audit, args=(settings, row.cluster_id),
    )  # fmt: skip
    with buttons[2].form(f"rename-form-{row.cluster_id}", border=False, enter_to_submit=True):
        cols = st.columns([3, 2], vertical_alignment="bottom")
        cols[0].text_input(f"New name for cluster {row.cluster_id}", key=f"rename-{row.cluster_id}", placeholder=row.label)
        cols[1].form_submit_button(
            "Rename cluster", help="relabel every item of this cluster; items of the same labels that join it later follow", disabled=row.items == 0, width="stretch",
            on_click=review_cluster, args=(settings, row.cluster_id, "relabeled", f"rename-{row.cluster_id}"),
        )  # fmt: skip


# ------------------------------------------------------------------ triage: risk and audits

CLUSTER_ORDER_CHOICES = {"riskiest first": "risk", "largest first": "size"}


def fmt_precision(p) -> str:
    if p is None or p.estimate is None:
        return "no audit yet"
    return f"{p.estimate:.2f} (95% Wilson {p.low:.2f}–{p.high:.2f}; {p.accepted} of {p.audited} audited items accepted)"


def overall_precision_line(overall, audited_clusters: int) -> None:
    """The estimated precision of the labels accepted through audits, all clusters together."""
    estimate = "" if overall is None else f"{overall.estimate:.4f}"
    text = (
        "Estimated precision of accepted labels: no cluster accepted after an audit yet"
        if overall is None
        else f"Estimated precision of accepted labels: {fmt_precision(overall)}, weighted by cluster size over the accepted clusters"
    )
    st.markdown(
        f'<div class="sl-precision-overall" data-estimate="{estimate}" data-clusters="{audited_clusters}">{html.escape(text)}</div>',
        unsafe_allow_html=True,
    )


def start_audit(settings: Settings, cluster_id: int) -> None:
    """Draw (or reopen) the cluster's audit; it shows under the cluster's card."""
    try:
        audit = draw_audit(settings.db, settings.reviews, cluster_id, settings.audit_size, reviewer(), source=SOURCE)
    except ReviewError as exc:
        flash("error", str(exc))
        return
    st.session_state.setdefault("audits_shown", {})[cluster_id] = audit.audit_key


def audit_verdict(settings: Settings, key: str, item_key: str, status: str) -> None:
    try:
        audit = review_audit_item(settings.db, settings.reviews, key, item_key, status, reviewer=reviewer(), source=SOURCE)
    except ReviewError as exc:
        flash("error", str(exc))
        return
    if audit.status == "failed":
        flash("warning", f"cluster {audit.cluster_id}: a sample item was {status}; the bulk accept is blocked")


def accept_audited(settings: Settings, key: str) -> None:
    try:
        result = accept_after_audit(settings.db, settings.reviews, key, reviewer=reviewer(), source=SOURCE)
    except ReviewError as exc:
        flash("error", str(exc))
        return
    flash("success", f"accepted {result.review_key.replace('cluster/', 'cluster ')} after its audit: {result.items} review(s) recorded")


def triage_block(conn, settings: Settings, thumbs: ThumbnailCache, row: q.ClusterRow, risk: float | None, precision) -> None:
    """The cluster's risk and precision estimate, and its audit when one is open (or was just
    closed in this session): the sample items with Accept / Reject, then the bulk accept."""
    estimate = "" if precision is None or precision.estimate is None else f"{precision.estimate:.4f}"
    st.markdown(
        f'<div class="sl-triage" data-cluster-id="{row.cluster_id}" data-risk="{"" if risk is None else f"{risk:.6f}"}" '
        f'data-estimate="{estimate}">risk {"–" if risk is None else f"{risk:.2f}"} &nbsp;·&nbsp; precision {html.escape(fmt_precision(precision))}</div>',
        unsafe_allow_html=True,
    )
    item = q.cluster_item(conn, row.cluster_id)
    audit = open_audit(settings.reviews, item, row.cluster_id) if item else None
    shown = st.session_state.get("audits_shown", {}).get(row.cluster_id)
    if audit is None and shown:
        audit = get_audit(settings.reviews, shown)
    if audit is None:
        return
    details = q.items_by_key(conn, [(i.image_id, i.region_id, i.line_no) for i in audit.items])
    st.markdown(
        f'<div class="sl-audit" data-audit="{audit.audit_key}" data-status="{audit.status}" data-pending="{audit.pending}" '
        f'data-size="{len(audit.items)}">Audit {audit.audit_no} of cluster {row.cluster_id}: {len(audit.items)} random items of its '
        f"{audit.cluster_items:,}; accept each right label, reject a wrong one</div>",
        unsafe_allow_html=True,
    )
    cells = st.columns(max(1, min(len(audit.items), 5)))
    for n, it in enumerate(audit.items):
        d = details.get((it.image_id, it.region_id, it.line_no), {"text": "?", "bbox": None})
        with cells[n % len(cells)]:
            box = [Box(tuple(d["bbox"]), "", COLORS["highlight"], 4)] if d.get("bbox") else []
            path = thumbs.get(it.image_id, d.get("path"), THUMB, box, d.get("width"), d.get("height"))
            st.image(str(path), caption=f"{d['text']} · {d.get('path') or it.image_id[:12]}", width="stretch")
            st.markdown(
                f'<span class="sl-audit-item" data-item="{html.escape(it.item_key)}" data-verdict="{it.verdict or ""}">'
                f"{html.escape(it.verdict or 'not reviewed')}</span>",
                unsafe_allow_html=True,
            )
            done = it.verdict is not None or audit.status == "passed"
            cols = st.columns(2)
            cols[0].button("Accept", key=f"audit-ok-{audit.audit_key.replace('/', '-')}-{n}", disabled=done, on_click=audit_verdict, args=(settings, audit.audit_key, it.item_key, "accepted"))
            cols[1].button("Reject", key=f"audit-no-{audit.audit_key.replace('/', '-')}-{n}", disabled=done, on_click=audit_verdict, args=(settings, audit.audit_key, it.item_key, "rejected"))
    if audit.status == "failed":
        st.markdown(
            '<div class="sl-audit-blocked">A sample item was rejected: the bulk accept is blocked. Review this cluster item by item '
            '("Review items"), or draw a new audit ("Audit and accept") once the wrong items are fixed.</div>',
            unsafe_allow_html=True,
        )
    elif audit.status == "passed":
        st.markdown('<div class="sl-audit-passed">Audit passed: the cluster was accepted.</div>', unsafe_allow_html=True)
    st.button(
        f"Accept the cluster ({sum(i.verdict == 'accepted' for i in audit.items)} of {len(audit.items)} sample items accepted)",
        key=f"audit-accept-{row.cluster_id}", type="primary", disabled=audit.status != "open" or not audit.can_accept,
        on_click=accept_audited, args=(settings, audit.audit_key),
    )  # fmt: skip


def queue_view(conn, settings: Settings, thumbs: ThumbnailCache, f: q.ItemFilter) -> None:
    signature = catalog_signature(settings.db)
    total = _count_items(str(settings.db), signature, f)
    order = {"least confident first": "confidence", "most confident first": "-confidence", "by image": "image"}[st.session_state["f_order"]]
    if st.session_state.get("queue_filter") != (f, order):  # a new list starts at its first item
        st.session_state["queue_filter"] = (f, order)
        st.session_state["cursor"] = 0
    st.markdown(f"### Review queue ({total:,} items)")
    if total == 0:
        st.info("no item matches the filters")
        return
    if f.label_source == "propagated":
        bulk = st.columns([3, 3, 5], vertical_alignment="center")
        bulk[0].button(
            f"Accept propagated ({total:,})", key="bulk_accept", on_click=review_propagated, args=(settings, f, "accepted"),
            help="record each listed propagated label as a person's review (accepted, or relabeled when it is not the machine label)",
        )  # fmt: skip
        bulk[1].button(
            f"Reject propagated ({total:,})", key="bulk_reject", on_click=review_propagated, args=(settings, f, "rejected"),
            help="record each listed item as rejected: its label is wrong",
        )  # fmt: skip
        bulk[2].caption("over every item the filters list, not only this page; reviewed, they are never propagated over again")
    cursor = max(0, min(st.session_state.get("cursor", 0), total - 1))
    st.session_state["cursor"] = cursor
    page_start = cursor - cursor % QUEUE_PAGE
    page = q.item_page(conn, f, page_start, QUEUE_PAGE, order=order)
    if not page:  # the list shrank under the cursor (reviews by someone else): back to its start
        if cursor == 0:
            st.info("no item matches the filters")
            return
        st.session_state["cursor"] = 0
        st.rerun()
    item = page[min(cursor - page_start, len(page) - 1)]
    left, right = st.columns([3, 2])
    with left:
        box = [Box(tuple(item["bbox"]), item["final_label"] or item["text"] or "", COLORS["highlight"])] if item.get("bbox") else []
        info = q.image_paths(conn, [item["image_id"]]).get(item["image_id"], {})
        path = thumbs.get(item["image_id"], item.get("path"), 768, box, info.get("width"), info.get("height"))
        st.image(str(path), caption=f"{item.get('path')} · {item_name(item)}")
    with right:
        st.markdown(f"**Item {cursor + 1:,} of {total:,}** · {item_name(item)} of `{item.get('path')}`")
        st.markdown(
            f"- text: **{html.escape(item['text'] or '')}**\n- machine label: **{html.escape(item['machine_label'] or '—')}** "
            f"(cluster {item['cluster_id']}, confidence {item['confidence']:.2f})\n- score: {item['score'] or 0:.2f}\n"
            f"- review: {item['review_status'] or 'none'}" + (f" → **{html.escape(item['final_label'] or '')}**" if item["review_status"] else "")
        )
        if item.get("label_source") == "propagated":
            st.markdown(propagated_marker(item), unsafe_allow_html=True)
        b = st.columns(2)
        b[0].button(
            "Accept & next", type="primary", shortcut="A", key="q_accept", help="accept the label shown: the machine label, or a propagated one (key A)",
            on_click=review_current, args=(settings, item, "accepted", total),
        )  # fmt: skip
        b[1].button(
            "Reject & next", shortcut="X", key="q_reject", help="mark the machine label as wrong (key X)",
            on_click=review_current, args=(settings, item, "rejected", total),
        )  # fmt: skip
        b = st.columns(3)
        b[0].button("◀ Back", shortcut="B", key="q_back", on_click=move_cursor, args=(-1, total), disabled=cursor == 0)
        b[1].button("Skip ▶", shortcut="N", key="q_skip", on_click=move_cursor, args=(+1, total), disabled=cursor >= total - 1)
        b[2].button("Open", key="q_open", help="this item's image, all its boxes and OCR lines", on_click=go_image, args=(item["image_id"],))
        with st.form("q_relabel", border=False, enter_to_submit=True):
            st.text_input("New label", key="q_label", placeholder=item["machine_label"] or "")
            st.form_submit_button("Relabel & next", on_click=review_current, args=(settings, item, "relabeled", total, "q_label"))
        st.caption("keys: A accept & next · X reject & next · N skip · B back")
    import pandas as pd

    table = pd.DataFrame(
        [
            {
                "#": page_start + i + 1, "": "▶" if page_start + i == cursor else "", "path": r.get("path"), "item": item_name(r),
                "text": r["text"], "machine label": r["machine_label"], "cluster": r["cluster_id"],
                "confidence": round(r["confidence"], 3), "review": r["review_status"] or "", "final label": r["final_label"],
                "source": source_text(r),
            }
            for i, r in enumerate(page)
        ]
    )  # fmt: skip
    key = f"q_table-{page_start}-{st.session_state.get('table_nonce', 0)}"
    st.dataframe(table, hide_index=True, on_select=lambda: select_row(key, page_start), selection_mode="single-row", key=key)
    nav = st.columns([1, 1, 4])
    nav[0].button("◀ Page", key="q_prev_page", on_click=move_cursor, args=(-QUEUE_PAGE, total), disabled=page_start == 0)
    nav[1].button("Page ▶", key="q_next_page", on_click=move_cursor, args=(QUEUE_PAGE, total), disabled=page_start + QUEUE_PAGE >= total)


def image_view(conn, settings: Settings, thumbs: ThumbnailCache) -> None:
    image_id = st.session_state.get("image_id") or q.first_image(conn)
    if image_id is None:
        st.info("the catalog has no images")
        return
    st.session_state["image_id"] = image_id
    info = q.image_info(conn, image_id)
    if info is None:
        st.warning(f"image {image_id[:16]} is not in the catalog (rebuilt?)")
        st.session_state["image_id"] = None
        return
    prev_id, next_id = q.neighbour_image(conn, image_id, -1), q.neighbour_image(conn, image_id, +1)
    nav = st.columns([1, 1, 4], vertical_alignment="bottom")
    nav[0].button("◀ Previous", shortcut="P", key="i_prev", disabled=prev_id is None, on_click=go_image, args=(prev_id,))
    nav[1].button("Next ▶", shortcut="N", key="i_next", disabled=next_id is None, on_click=go_image, args=(next_id,))
    nav[2].text_input("Go to image (path, part of a path, or id)", key="goto", on_change=find_image_cb, args=(settings,))
    regions = q.image_regions(conn, image_id)
    lines = q.image_lines(conn, image_id)
    st.markdown(f"### {html.escape(info['path'])}")
    copies = f" · {info['n_paths']} copies: " + ", ".join(info["paths"]) if info["n_paths"] > 1 else ""
    st.caption(
        f"image {image_id[:16]}… · {info['width']}×{info['height']} {info['format'] or ''} · {info['bytes'] or 0:,} bytes · "
        f"status {info['status']}{' (' + info['error'] + ')' if info['error'] else ''}{copies}"
    )
    near_duplicates(conn, thumbs, image_id)
    gate = (
        f"text gate: **{info['gate_decision'] or 'not run'}**"
        + (f" — skipped: `{info['skip_reason']}`" if info["skip_reason"] else "")
        + (f" · score {info['gate_score']:.2f} · {info['text_regions']} text regions" if info["gate_score"] is not None else "")
    )
    st.markdown(f'<div class="sl-gate" data-decision="{html.escape(str(info["gate_decision"]))}" data-skip-reason="{html.escape(str(info["skip_reason"] or ""))}"></div>', unsafe_allow_html=True)
    st.markdown(gate)
    toggles = st.columns(2)
    show_regions = toggles[0].checkbox("Draw detection boxes", value=True, key="draw_regions")
    show_lines = toggles[1].checkbox("Draw OCR line boxes", value=True, key="draw_lines")
    boxes = []
    if show_regions:
        boxes += [Box(tuple(r["bbox"]), f"{r['region_id']}: {r['final_label'] or '✗ ' + (r['text'] or '')}", box_color(r["review_status"])) for r in regions if r["bbox"]]
    if show_lines:
        boxes += [Box(tuple(l["bbox"]), f"L{l['line_no']}: {l['text']}", COLORS["text"], 2) for l in lines if l["bbox"]]
    path = thumbs.get(image_id, info["path"], LARGE, boxes, info["width"], info["height"])
    st.image(str(path), caption=f"{len(regions)} regions, {len(lines)} OCR lines", width="content")
    st.caption("boxes: orange machine label · green accepted · blue relabeled · red rejected · teal OCR lines")

    st.markdown(f'<div class="sl-regions" data-count="{len(regions)}"></div>', unsafe_allow_html=True)
    st.markdown(f"#### Regions ({len(regions)})")
    if regions:
        st.table(
            [
                {
                    "region": r["region_id"], "caption": r["text"], "machine label": r["machine_label"], "cluster": r["cluster_id"],
                    "confidence": f"{r['confidence']:.2f}", "score": f"{r['score']:.2f}",
                    "candidates": ", ".join(f"{c['label']} {c['score']:.2f}" for c in r["labels"][:3]),
                    "review": r["review_status"] or "", "final label": r["final_label"] or "", "source": source_text(r),
                }
                for r in regions
            ]
        )  # fmt: skip
        for r in regions:
            item_actions(settings, r, f"region {r['region_id']}")
    st.markdown(f'<div class="sl-lines" data-count="{len(lines)}"></div>', unsafe_allow_html=True)
    st.markdown(f"#### OCR lines ({len(lines)})")
    if lines:
        st.table(
            [
                {
                    "line": l["line_no"], "text": l["text"], "confidence": f"{l['score']:.2f}", "language": l["language"] or "",
                    "in region": "" if l["in_region"] is None else l["in_region"], "machine label": l["machine_label"],
                    "cluster": l["cluster_id"], "review": l["review_status"] or "", "final label": l["final_label"] or "",
                    "source": source_text(l),
                }
                for l in lines
            ]
        )  # fmt: skip
        for l in lines:
            item_actions(settings, l, f"line {l['line_no']}")


NEAR_THUMB = 160  # near-duplicate thumbnails: drawn at 160 px, six in a row


def near_duplicates(conn, thumbs: ThumbnailCache, image_id: str) -> None:
    """The image's near-duplicate group: how many, and each other member's thumbnail with its
    distance in bits and a button that opens it. A review of one reaches the others (propagated)."""
    group = q.near_duplicate_group(conn, image_id)
    if not group:
        return
    size, group_id = group[0]["group_size"], group[0]["group_id"]
    others = [m for m in group if m["image_id"] != image_id]
    st.markdown(
        f'<div class="sl-near-duplicates" data-count="{size}" data-group="{html.escape(group_id)}"></div>',
        unsafe_allow_html=True,
    )
    st.markdown(f"#### Near-duplicates: {size} images in this group")
    st.caption(
        "images whose perceptual hashes differ in few bits (dedupe.max_distance); accepting or relabeling an item here "
        "reaches the matching item of each (↻ propagated), unless a person reviewed it"
    )
    cols = st.columns(6)
    for n, member in enumerate(others[:6 * 4]):
        with cols[n % 6]:
            path = thumbs.get(member["image_id"], member.get("path"), NEAR_THUMB, (), member.get("width"), member.get("height"))
            where = "the group's representative" if member["image_id"] == group_id else f"{member['distance']} bits from the representative"
            st.image(str(path), caption=f"{member.get('path')} · {where}")
            st.markdown(
                f'<div class="sl-near-duplicate" data-image-id="{html.escape(member["image_id"])}" data-path="{html.escape(member.get("path") or "")}"></div>',
                unsafe_allow_html=True,
            )
            name = Path(member.get("path") or member["image_id"][:12]).name
            st.button(f"Open {name}", key=f"nd-open-{member['image_id'][:16]}", on_click=go_image, args=(member["image_id"],))
    if size > len(group):
        st.caption(f"… and {size - len(group):,} more")


def item_actions(settings: Settings, item: dict, name: str) -> None:
    """One item's overrides, in a form so the typed label travels with the click (Enter relabels)."""
    key = f"lab-{item['image_id'][:16]}-{name.replace(' ', '')}"
    with st.form(f"form-{key}", border=False, enter_to_submit=True):
        cols = st.columns([2, 3, 1, 1, 1], vertical_alignment="bottom")
        state = f" *({item['review_status']})*" if item["review_status"] else ""
        if item.get("label_source") == "propagated":
            cols[0].markdown(f"**{name}**: {propagated_marker(item)}", unsafe_allow_html=True)
        else:
            cols[0].markdown(f"**{name}**: {html.escape(item['final_label'] or '✗')}{state}")
        cols[1].text_input(f"New label for {name}", key=key, placeholder=item["machine_label"] or "")
        cols[2].form_submit_button(f"Relabel {name}", on_click=review_image_item, args=(settings, item, "relabeled", key))
        cols[3].form_submit_button(f"Accept {name}", on_click=review_image_item, args=(settings, item, "accepted", key))
        cols[4].form_submit_button(f"Reject {name}", on_click=review_image_item, args=(settings, item, "rejected", key))


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
            f"{html.escape(name)} <span style=\"color:#8e8e93\">({int(size):,})</span></div>"
            for cid, name, size in zip(shown["cluster"], shown["name"], shown["size"])
        )
        st.markdown(
            f'<div class="sl-legend" style="max-height:600px;overflow-y:auto;font-size:0.85rem;line-height:1.5">{items or "no cluster matches"}</div>',
            unsafe_allow_html=True,
        )


# ------------------------------------------------------------------------------- access


def access_gate(settings: Settings) -> None:
    """Stop the script run here until this session has presented the token: nothing below (no
    catalog, no review widget, no callback) exists for a session that has not."""
    address = st.get_option("server.address")
    if settings.token is None:
        if not is_loopback(address):
            st.error(
                f"this dashboard serves on {address or 'every interface'} without an access token: set {TOKEN_ENV} "
                f"(at least {MIN_TOKEN_LENGTH} characters) or bind 127.0.0.1 (`shardlens review` does both checks)"
            )
            st.stop()
        return
    if st.session_state.get("auth_ok") is True:
        return
    given = st.query_params.get("token")
    if given is not None:
        del st.query_params["token"]  # out of the address bar, the history and screenshots
        if token_matches(given, settings.token):
            st.session_state["auth_ok"] = True
            return
        st.session_state["auth_failed"] = True
    st.markdown("## shardlens review")
    with st.columns([2, 3])[0], st.form("login", border=True, enter_to_submit=True):
        st.text_input("Access token", type="password", key="auth_token")
        submitted = st.form_submit_button("Open the dashboard", type="primary")
    if submitted:
        if token_matches(st.session_state.get("auth_token"), settings.token):
            st.session_state["auth_ok"] = True
            st.session_state.pop("auth_failed", None)
            st.rerun()
        st.session_state["auth_failed"] = True
    if st.session_state.get("auth_failed"):
        st.error("wrong access token")
    st.caption("This dashboard asks every browser session for the token that `shardlens review` was started with.")
    st.stop()


# --------------------------------------------------------------------------------- main


def init_state() -> None:
    if st.session_state.get("_init"):
        return
    st.session_state["_init"] = True
    st.session_state.setdefault("reviewer", os.environ.get("SHARDLENS_REVIEWER") or os.environ.get("USER") or "dashboard")
    st.session_state.setdefault("f_conf", (0.0, 1.0))
    params = st.query_params
    view = params.get("view", "").lower()
    for name in VIEWS:
        if view and name.lower().startswith(view):
            st.session_state["view"] = name
    if params.get("image"):
        st.session_state["image_id"] = params["image"]
        st.session_state.setdefault("view", "Image")
    if params.get("cluster"):
        try:
            st.session_state["f_cluster"] = int(params["cluster"])
        except ValueError:
            pass
    if params.get("near", "") in ("1", "true", "yes"):
        st.session_state["f_near"] = True
    source = params.get("source", "").lower()
    for name, value in LABEL_SOURCE_CHOICES.items():
        if source and source in (name, value):
            st.session_state["f_source"] = name


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
