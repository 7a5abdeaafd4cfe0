"""Finding images: walking the images root or reading a list file.

Paths are kept relative to the images root (posix form); a path is only ever used when it stays
inside the root (:func:`is_inside`), unless the listing allows paths outside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif")


class ListingError(ValueError):
    """The images root or list file cannot be used as given."""


@dataclass(frozen=True, slots=True)
class ListedImage:
    """One listed file: its path relative to the root and the stat facts that trigger re-runs."""

    path: str
    size: int  # -1 when the file could not be stat'ed (missing, permission, loop)
    mtime_ns: int


def list_images(
    root: str | Path,
    extensions: tuple[str, ...] | list[str] = DEFAULT_EXTENSIONS,
    list_file: str | Path | None = None,
    follow_symlinks: bool = False,
    allow_outside_root: bool = False,
    skipped: list[tuple[str, str]] | None = None,
) -> list[ListedImage]:
    """List images under ``root`` (recursively, extension match case-insensitive) or from ``list_file``.

    A list file holds one path per line (relative to ``root``, or absolute inside it); blank lines
    and lines starting with ``#`` are ignored. Paths that leave the root (``..``, absolute paths
    elsewhere) are refused unless ``allow_outside_root``; a listed symlink pointing out of the
    root is refused by ingest (error ``permission_denied``), which resolves every path it reads.
    Returns entries sorted by path.

    ``skipped``, when given, receives ``(path, reason)`` for each image-named entry the folder walk
    leaves out (``symlink_not_followed``, ``symlink_outside_root``, ``name_not_utf8``: a name
    that is not valid UTF-8, shown with ``\\x`` escapes) and each folder it cannot read
    (``unreadable_folder``), so a report can name them.
    """
    root = Path(root)
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if list_file is not None:
        rel_paths = _read_list_file(Path(list_file), root, allow_outside_root)
        entries = _stat_entries(os.fspath(root), rel_paths)
    else:
        if not root.is_dir():
            raise ListingError(f"images root {str(root)!r} is not a folder (set 'images' in the config)")
        entries = list(_walk(root, exts, follow_symlinks, allow_outside_root, skipped))
        if skipped is not None:
            skipped.sort()
    entries.sort(key=lambda e: e.path)
    return entries


def _read_list_file(list_file: Path, root: Path, allow_outside_root: bool) -> list[str]:
    if not list_file.is_file():
        raise ListingError(f"image list file {str(list_file)!r} does not exist")
    root_abs = os.path.abspath(root)
    seen: set[str] = set()
    out: list[str] = []
    with list_file.open("rb") as handle:
        for line_no, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError:
                shown = raw_bytes.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                raise ListingError(
                    f"{list_file} line {line_no}: {shown!r} is not valid UTF-8 (list files are UTF-8 text; rename the file or fix the line)"
                ) from None
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            rel = _relative_to_root(line, root_abs)
            if rel is None and not allow_outside_root:
                raise ListingError(
                    f"{list_file} line {line_no}: path {line!r} is outside the images root {root_abs!r} (set listing.allow_outside_root: true to allow it)"
                )
            rel = rel if rel is not None else os.path.abspath(os.path.join(root_abs, line))
            if rel not in seen:
                seen.add(rel)
                out.append(rel)
    return out


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it; both are taken as given (resolve them first,
    with ``os.path.realpath`` or ``os.path.normpath``, as the question needs)."""
    return path == root or path.startswith(root + os.sep)


def _relative_to_root(path: str, root_abs: str) -> str | None:
    """Posix path of ``path`` relative to the root, or None if it escapes the root."""
    if not os.path.isabs(path) and "\\" not in path:
        parts = path.split("/")
        if ".." not in parts and "." not in parts and "" not in parts:
            return path  # already a clean relative path: the common case, kept cheap
    joined = os.path.normpath(os.path.join(root_abs, path))
    if not is_inside(joined, root_abs):
        return None
    return Path(os.path.relpath(joined, root_abs)).as_posix()


def _stat_entries(root: str, rel_paths: list[str]) -> list[ListedImage]:
    """Size and mtime of each listed path (-1, 0 when it cannot be stat'ed: ingest then names the
    reason). Relative paths are resolved against an open descriptor of the root rather than joined
    into strings: a million listed paths cost a third less (an absolute path ignores it)."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        root_fd = None
    stat = os.stat
    out = []
    try:
        for rel in rel_paths:
            try:
                st = stat(rel, dir_fd=root_fd) if root_fd is not None else stat(os.path.join(root, rel))
            except OSError:
                out.append(ListedImage(rel, -1, 0))
                continue
            out.append(ListedImage(rel, st.st_size, st.st_mtime_ns))
    finally:
        if root_fd is not None:
            os.close(root_fd)
    return out


def _walk(root: Path, exts: tuple[str, ...], follow_symlinks: bool, allow_outside_root: bool, skipped: list | None = None):
    root_real = os.path.realpath(root)
    stack = [root]
    visited_dirs: set[tuple[int, int]] = set()

    def skip(path: str, reason: str) -> None:
        if skipped is not None:
            rel = Path(os.path.relpath(path, root)).as_posix()
            skipped.append((os.fsencode(rel).decode("utf-8", "backslashreplace"), reason))

    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in visited_dirs:
                continue  # a symlink loop or a second link to a folder already walked
            visited_dirs.add(key)
            with os.scandir(folder) as it:
                dir_entries = list(it)
        except OSError:
            if os.fspath(folder) != os.fspath(root):
                skip(os.fspath(folder), "unreadable_folder")
            continue
        for entry in dir_entries:
            wanted_name = entry.name.lower().endswith(exts)
            if not _utf8(entry.name):
                # bytes that are not UTF-8: no record, listing or report could carry the name
                # as text, so the file (or folder) is left out and reported with \x escapes
                if wanted_name or entry.is_dir(follow_symlinks=False):
                    skip(entry.path, "name_not_utf8")
                continue
            try:
                is_link = entry.is_symlink()
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    if is_link and not _link_allowed(entry.path, root_real, allow_outside_root):
                        skip(entry.path, "symlink_outside_root")
                        continue
                    stack.append(Path(entry.path))
                    continue
            except OSError:
                # a link that cannot be resolved (a loop): list it when it looks like an image,
                # so that ingest reports it instead of it vanishing silently
                if wanted_name and follow_symlinks:
                    yield ListedImage(Path(os.path.relpath(entry.path, root)).as_posix(), -1, 0)
                continue
            if not wanted_name:
                continue
            rel = Path(os.path.relpath(entry.path, root)).as_posix()
            if is_link and not (follow_symlinks and _link_allowed(entry.path, root_real, allow_outside_root)):
                if not follow_symlinks:
                    skip(entry.path, "symlink_not_followed")
                    continue
                yield ListedImage(rel, -1, 0)  # points outside the root: ingest reports it
                continue
            try:
                st = entry.stat(follow_symlinks=True)
                yield ListedImage(rel, st.st_size, st.st_mtime_ns)
            except OSError:
                yield ListedImage(rel, -1, 0)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by the file system encoding as surrogates
        return False
    return True


def _link_allowed(path: str, root_real: str, allow_outside_root: bool) -> bool:
    """Whether the walk may follow a link: it resolves inside the root, or the listing allows outside."""
    return allow_outside_root or is_inside(os.path.realpath(path), root_real)
