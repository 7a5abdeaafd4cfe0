"""Reading and decoding untrusted image files safely.

Decoding always applies the EXIF orientation, so every coordinate downstream is in the frame a
person sees.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat as stat_mod
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..options import Limits  # declared with the other options; imported from here and from shardlens.images
from .listing import is_inside

# Pillow must raise on truncated files (our 'truncated' reason), never pad them silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(Exception):
    """An image that cannot be used; ``reason`` is one of the ingest schema's error codes."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def resolve_inside(root: Path, rel_path: str, allow_outside_root: bool) -> Path:
    """``root / rel_path``, refused (``permission_denied``) when it resolves outside the root.

    Listing keeps clean relative paths without resolving them (cheap for millions of entries),
    so this is where a symlink out of the root (a list-file entry, or a link the walk listed) is
    caught: once per file, beside the read that costs far more. Absolute paths only reach here
    when the listing allowed them (``listing.allow_outside_root``).
    """
    path = root / rel_path
    if allow_outside_root or os.path.isabs(rel_path):
        return path
    real = os.path.realpath(path)
    root_real = os.path.realpath(root)
    if not is_inside(real, root_real):
        raise ImageError(
            "permission_denied",
            f"{rel_path} resolves to {real}, outside the images root {root_real} (set listing.allow_outside_root: true to allow it)",
        )
    return path


def _missing_detail(path: Path) -> str:
    """Why a listed file is not there. Names are kept exactly as listed (a list file's line is a
    name, spaces included), so a name with spaces at either end is quoted and pointed out."""
    name = Path(path).name
    if name != name.strip():
        return f"{str(path)!r} does not exist (the listed name has spaces at its start or end; names are kept exactly)"
    return f"{path} does not exist"


def read_bytes(path: Path, limits: Limits) -> bytes:
    """Read a file's bytes or raise :class:`ImageError` with a specific reason.

    The file is opened non-blocking and checked to be a regular file on the open descriptor, so
    a named pipe or device named like an image is refused instead of blocking the job forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError("not_found", _missing_detail(path)) from None
    except PermissionError:
        raise ImageError("permission_denied", f"{path}: permission denied") from None
    except OSError as exc:
        reason = "not_found" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else "io_error"
        raise ImageError(reason, f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            kind = "a named pipe" if stat_mod.S_ISFIFO(st.st_mode) else "a folder" if stat_mod.S_ISDIR(st.st_mode) else "a device or socket"
            raise ImageError("io_error", f"{path} is {kind}, not a regular file")
        if st.st_size > limits.max_bytes:
            raise ImageError("too_large_bytes", f"{st.st_size} bytes is over the limit of {limits.max_bytes}")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 24, limits.max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limits.max_bytes:  # grew while we read
                raise ImageError("too_large_bytes", f"more than {limits.max_bytes} bytes (the file grew while read)")
    except PermissionError:
        raise ImageError("permission_denied", f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageError("io_error", f"{path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    return data


# Formats that need an optional decoder plugin; without it the file is 'unsupported_format'.
PLUGIN_FORMATS = (".heic", ".heif", ".avif")

# ISO-BMFF brands (bytes 8-12 after 'ftyp') of HEIF-family files, which need a plugin.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}

# Leading bytes of image formats: a file starting with one of these is an image that is damaged
# ('corrupt'), not a file that is no image at all ('not_an_image').
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
)


def sniff_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce (``HEIF`` for HEIC/AVIF), or None."""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def open_image(source: Path | bytes, limits: Limits, draft_size: int | None = None, name: str = "") -> Image.Image:
    """Open, fully decode and EXIF-orient an image; raise :class:`ImageError` with a reason.

    ``draft_size`` lets JPEG decode at a reduced scale (DCT scaling), much faster when only a
    small version is needed; the returned image is then smaller than the original. ``name`` (the
    file name) tells an undecodable HEIC/AVIF ('unsupported_format') from a non-image.

    Pillow's decompression-bomb guard is set to ``limits.max_pixels`` for the call (its warning
    above the limit is an error here, and it refuses outright above twice the limit before
    reading any pixel data), then restored.
    """
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous_limit = Image.MAX_IMAGE_PIXELS
        previous_warn = Image.WARN_POSSIBLE_FORMATS
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
        Image.WARN_POSSIBLE_FORMATS = True  # why each plugin refused the file, for the detail
        try:
            image = Image.open(fp)
            image.seek(0)  # animated formats: the first frame
            if image.width * image.height > limits.max_pixels:
                raise ImageError("too_many_pixels", f"{image.width}x{image.height} is over the limit of {limits.max_pixels:,} pixels (limits.max_pixels)")
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            if image.format == "PNG":
                _check_png(image, source)
            if image.format == "JPEG" and _jpeg_ended_early(image, source, draft_size):
                raise ImageError(
                    "truncated",
                    f"the JPEG's image data ends before its declared {image.width}x{image.height} pixels are all decoded"
                    " (its header declares more than the file holds)",
                )
            oriented = ImageOps.exif_transpose(image)
            oriented.format = image.format
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow's own text quotes its internal limit (twice ours for the error): say ours
            size = re.search(r"Image size \((\d+) pixels\)", str(exc))
            declared = f"{int(size.group(1)):,} pixels declared" if size else "the declared size"
            raise ImageError("too_many_pixels", f"{declared} is over the limit of {limits.max_pixels:,} pixels (limits.max_pixels)") from None
        except UnidentifiedImageError:
            head = source[:16] if isinstance(source, bytes) else _head(source)
            announced = sniff_format(head)
            if announced == "HEIF":
                brand = head[8:12].decode("ascii", "replace")
                raise ImageError("unsupported_format", f"HEIF-family content (brand {brand!r}); no decoder for it is installed") from None
            if announced is None and name.lower().endswith(PLUGIN_FORMATS):
                raise ImageError("unsupported_format", f"no decoder for {Path(name).suffix} is installed") from None
            if announced is not None:
                prefix = f"{announced} opening failed. "
                why = "; ".join(str(w.message).removeprefix(prefix) for w in caught if str(w.message).startswith(prefix)) or "its decoder refused it"
                raise ImageError("corrupt", f"a damaged {announced} file: {why}") from None
            raise ImageError("not_an_image", "no installed decoder recognises this file") from None
        except OSError as exc:
            text = str(exc)
            if "truncated" in text or "image file is truncated" in text or "broken data stream" in text:
                raise ImageError("truncated", text) from None
            raise ImageError("corrupt", text) from None
        except (SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, ZeroDivisionError) as exc:
            raise ImageError("corrupt", f"{type(exc).__name__}: {exc}") from None
        except MemoryError:
            raise ImageError("too_many_pixels", "decoding needs more memory than is available") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous_limit
            Image.WARN_POSSIBLE_FORMATS = previous_warn
    return oriented


def _check_png(image: Image.Image, source: Path | bytes) -> None:
    """Raise :class:`ImageError` for a PNG that Pillow decodes although it lies.

    Pillow does not check the checksums of image data (IDAT) chunks or that a chunk is as long as
    its length field says; ``verify()`` does, on a second pass over the chunks (CRC-32 only, no
    decoding). And when the compressed data ends before the rows that the header (IHDR) declares,
    Pillow leaves the missing rows black and reports success: when the last pixel is all zero,
    the image data's decompressed length is compared with what the declared size needs.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        Image.open(io.BytesIO(data)).verify()
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageError("corrupt", f"a damaged PNG file: {exc}") from None
    corner = image.getpixel((image.width - 1, image.height - 1))
    if any(corner) if isinstance(corner, tuple) else corner:
        return
    got, need = _png_data_sizes(data)
    if got < need:
        raise ImageError(
            "truncated",
            f"the PNG's image data holds {got:,} of the {need:,} bytes its declared {image.width}x{image.height} pixels need"
            " (its header declares more than the file holds)",
        )


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_sizes(data: bytes) -> tuple[int, int]:
    """(bytes the IDAT data decompresses to, bytes the IHDR's size needs), capped at the need."""
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IHDR" and length >= 13:
            header = struct.unpack_from(">IIBBBBB", data, pos + 8)
        elif kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        return 0, 0
    width, height, depth, colour, _, _, interlace = header
    bits = depth * _PNG_CHANNELS.get(colour, 1)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    need = 0
    for x0, y0, dx, dy in passes:
        cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if cols and rows:
            need += rows * (1 + (cols * bits + 7) // 8)
    try:
        got = len(zlib.decompressobj().decompress(b"".join(idat), need))
    except zlib.error:
        return 0, need
    return got, need


# What libjpeg puts where a JPEG's data ran out: when the scan data ends early (a marker, e.g. the
# end-of-image one, comes before the last block), it warns, fills every block still missing with
# zero coefficients, a flat mid-grey, and reports success. Pillow drops that warning, so a
# 1 KB file whose header declares 1000x65500 would decode "fine" as a grey image.
_JPEG_UNFILLED = {"L": (128,), "RGB": (128, 128, 128), "CMYK": (127, 127, 127, 127)}  # CMYK is stored inverted

# Entropy-coded data ends at the first 0xFF that is neither a stuffed 0xFF00 nor a restart marker.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")

# Bytes fed to the decoder where a scan's data ends (never 0xFF, so never a marker): a scan that
# was complete skips them ("extraneous bytes before marker"); a scan that ran out decodes them.
_JPEG_PROBE = bytes((i * 73 + 41) % 255 for i in range(4096))


def _jpeg_ended_early(image: Image.Image, source: Path | bytes, draft_size: int | None) -> bool:
    """Whether the decoded JPEG's last blocks were never in the file (libjpeg's silent grey fill).

    The last block decoded (the bottom-right pixel) is checked first: only when it has exactly
    the fill value is the file decoded a second time with probe bytes placed at the end of each
    scan's data. A complete image decodes to the same pixels; one whose data ran out does not.
    A progressive JPEG cut after its first (DC) scans still has every block, at less detail: it
    is not grey at the corner and stays ok, as browsers show it.
    """
    fill = _JPEG_UNFILLED.get(image.mode)
    if fill is None or image.width == 0 or image.height == 0:
        return False
    corner = image.getpixel((image.width - 1, image.height - 1))
    if (corner,) != fill and corner != fill:
        return False
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    probed = _jpeg_with_probes(data)
    if probed is None:
        return False
    other = Image.open(io.BytesIO(probed))
    if draft_size is not None:
        other.draft("RGB", (draft_size, draft_size))
    try:
        other.load()
    except (OSError, SyntaxError, ValueError):
        return True  # the extra bytes were read as image data, and were not valid
    return other.size != image.size or other.tobytes() != image.tobytes()


def _jpeg_with_probes(data: bytes) -> bytes | None:
    """``data`` with :data:`_JPEG_PROBE` inserted where each scan's entropy-coded data ends, or
    None when the marker structure cannot be walked (then the check is not made)."""
    ends, pos = [], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
        if marker == 0xDA:  # start of scan: its entropy-coded data follows the header
            found = _JPEG_SCAN_END.search(data, pos)
            if found is None:
                return None
            ends.append(found.start())
            pos = found.start()
    if not ends:
        return None
    parts, last = [], 0
    for end in ends:
        parts += [data[last:end], _JPEG_PROBE]
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(16)
    except OSError:
        return b""


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB. 16-bit images are scaled down, transparency is flattened onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        grey = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return np.asarray(background.convert("RGB"))
    return np.asarray(image.convert("RGB"))


def fit_within(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """Downscale so the longer side is at most ``max_side``; return the image and the scale used."""
    longer = max(image.width, image.height)
    if longer <= max_side:
        return image, 1.0
    scale = max_side / longer
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale


def add_margin(image_rgb: np.ndarray, pad: int) -> np.ndarray:
    """The image on a border of ``pad`` pixels in its median edge colour: text detectors miss
    text that touches the frame (a cropped word, a tight banner), and find it with a margin."""
    import cv2

    if pad <= 0:
        return image_rgb
    edges = np.concatenate([image_rgb[0], image_rgb[-1], image_rgb[:, 0], image_rgb[:, -1]])
    fill = [int(v) for v in np.median(edges, axis=0)]
    return cv2.copyMakeBorder(image_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
