"""The dashboard's settings and session state: where the catalog and reviews are, the messages
shown on the next run, who reviews, where the page goes next, and writing reviews."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from shardlens.dashboard.launch import TOKEN_ENV
from shardlens.dashboard.thumbnails import default_cache_dir
from shardlens.propagation import review_of_propagated
from shardlens.review_store import Review, ReviewError
from shardlens.reviews import record_reviews
from shardlens.run_config import guess_audit_size, guess_images_root

VIEWS = ("Clusters", "Review queue", "Image", "Map")
SOURCE = "dashboard"
LABEL_SOURCE_CHOICES = {"any": None, "machine": "machine", "propagated": "propagated", "reviewed": "review"}


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
