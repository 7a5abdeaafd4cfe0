"""The image view: one image with its boxes, captions, OCR lines, gate decision and near-duplicate
group, and an override form per item."""

from __future__ import annotations

import html
from pathlib import Path

import streamlit as st

from shardlens.dashboard import queries as q
from shardlens.dashboard.item_text import box_color, item_name, propagated_marker, source_text
from shardlens.dashboard.state import Settings, flash, go_image, item_review, submit
from shardlens.dashboard.thumbnails import COLORS, Box, ThumbnailCache

LARGE = 1024
NEAR_THUMB = 160  # near-duplicate thumbnails: drawn at 160 px, six in a row


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
    st.markdown(
        f'<div class="sl-gate" data-decision="{html.escape(str(info["gate_decision"]))}" data-skip-reason="{html.escape(str(info["skip_reason"] or ""))}"></div>',
        unsafe_allow_html=True,
    )
    st.markdown(gate)
    toggles = st.columns(2)
    show_regions = toggles[0].checkbox("Draw detection boxes", value=True, key="draw_regions")
    show_lines = toggles[1].checkbox("Draw OCR line boxes", value=True, key="draw_lines")
    boxes = []
    if show_regions:
        boxes += [
            Box(tuple(r["bbox"]), f"{r['region_id']}: {r['final_label'] or '✗ ' + (r['text'] or '')}", box_color(r["review_status"]))
            for r in regions
            if r["bbox"]
        ]
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
    for n, member in enumerate(others[: 6 * 4]):
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
