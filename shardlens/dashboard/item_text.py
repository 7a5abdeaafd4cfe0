"""How an item (a region or an OCR line) is named and marked on the page: its name, box colour
and where its label comes from (a propagated label names the review it comes from)."""

from __future__ import annotations

import html

from shardlens.dashboard.thumbnails import COLORS


def item_name(item: dict) -> str:
    return f"region {item['region_id']}" if item.get("region_id") is not None else f"line {item['line_no']}"


def box_color(status: str | None) -> str:
    return COLORS.get(status or "machine", COLORS["machine"])


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
