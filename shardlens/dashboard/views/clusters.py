"""The clusters view: one card per cluster (riskiest first, or largest), with sample thumbnails,
its risk and audit precision estimate, its audit, and renaming or accepting it as a whole."""

from __future__ import annotations

import html

import streamlit as st

from shardlens.audits import accept_after_audit, audit_saves_actions, draw_audit, get_audit, open_audit, review_audit_item
from shardlens.dashboard import queries as q
from shardlens.dashboard.state import SOURCE, Settings, flash, go_cluster_queue, go_image, reviewer
from shardlens.dashboard.thumbnails import COLORS, Box, ThumbnailCache
from shardlens.review_store import ReviewError
from shardlens.reviews import record_cluster_review

THUMB = 320  # cluster samples: drawn at 320 px, shown 4 in a row (about 200 px wide at 1280 px)
SAMPLES = 4
CLUSTER_ORDER_CHOICES = {"riskiest first": "risk", "largest first": "size"}


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
            f' &nbsp;·&nbsp; <span class="sl-cluster-review" data-status="{verdict["status"]}">{said} as a whole{by}; items that join it later follow</span>'
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
        + "texts: "
        + ", ".join(f"{t['text']} ({t['count']})" for t in texts)
        + note
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
    k = audit_size(settings)
    worth = audit_saves_actions(row.items - row.reviewed, k)
    buttons[1].button(
        "Audit and accept", key=f"audit-c{row.cluster_id}", disabled=not worth, width="stretch",
        help="review a random sample of this cluster's unreviewed items first; when all of them are accepted, accept the cluster "
        "(each unreviewed item's own machine label; items that join the cluster later follow)" if worth else
        f"{row.items - row.reviewed} unreviewed item(s): an audit of {k} and the bulk accept would cost {k + 1} actions, "
        "no fewer than reviewing them one by one",
        on_click=start_audit, args=(settings, row.cluster_id),
    )  # fmt: skip
    if not worth and row.reviewed < row.items:
        buttons[1].markdown(
            f'<span class="sl-audit-none" data-cluster-id="{row.cluster_id}">{row.items - row.reviewed} unreviewed: too few to '
            f"audit ({k} + 1 actions); review them one by one</span>",
            unsafe_allow_html=True,
        )
    with buttons[2].form(f"rename-form-{row.cluster_id}", border=False, enter_to_submit=True):
        cols = st.columns([3, 2], vertical_alignment="bottom")
        cols[0].text_input(f"New name for cluster {row.cluster_id}", key=f"rename-{row.cluster_id}", placeholder=row.label)
        cols[1].form_submit_button(
            "Rename cluster", help="relabel every item of this cluster; items of the same labels that join it later follow", disabled=row.items == 0, width="stretch",
            on_click=review_cluster, args=(settings, row.cluster_id, "relabeled", f"rename-{row.cluster_id}"),
        )  # fmt: skip


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


def audit_size(settings: Settings) -> int:
    """k, the audit's sample size: ``--audit-size`` or the run's config, else the schema's default."""
    from shardlens.config import schema_default

    return int(settings.audit_size) if settings.audit_size else int(schema_default("reviews", "audit_size"))


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
            cols[0].button(
                "Accept",
                key=f"audit-ok-{audit.audit_key.replace('/', '-')}-{n}",
                disabled=done,
                on_click=audit_verdict,
                args=(settings, audit.audit_key, it.item_key, "accepted"),
            )
            cols[1].button(
                "Reject",
                key=f"audit-no-{audit.audit_key.replace('/', '-')}-{n}",
                disabled=done,
                on_click=audit_verdict,
                args=(settings, audit.audit_key, it.item_key, "rejected"),
            )
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
