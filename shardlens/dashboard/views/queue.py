"""The review queue: the filtered items one at a time, with "Accept & next" (key A), reject,
relabel, and accepting or rejecting every propagated label the filters list."""

from __future__ import annotations

import html

import streamlit as st

from shardlens.dashboard import queries as q
from shardlens.dashboard.item_text import item_name, propagated_marker, source_text
from shardlens.dashboard.state import Settings, catalog_signature, flash, go_image, item_review, move_cursor, reviewer, submit
from shardlens.dashboard.thumbnails import COLORS, Box, ThumbnailCache
from shardlens.propagation import review_of_propagated

QUEUE_PAGE = 20


@st.cache_data(show_spinner=False, max_entries=512)
def _count_items(db: str, signature: tuple, f: q.ItemFilter) -> int:
    conn = q.open_catalog(db)
    try:
        return q.count_items(conn, f)
    finally:
        conn.close()


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


def queue_view(conn, settings: Settings, thumbs: ThumbnailCache, f: q.ItemFilter) -> None:
    signature = catalog_signature(settings.db)
    total = _count_items(str(settings.db), signature, f)
    order = {"riskiest first": "risk", "least confident first": "confidence", "most confident first": "-confidence", "by image": "image"}[
        st.session_state["f_order"]
    ]
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
