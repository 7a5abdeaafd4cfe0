"""A hostile-input corpus, generated on the fly (no binaries are committed), with the outcome
each file must get.

``make_corpus(root)`` writes every file and returns the list of :class:`Case` s: the path
relative to ``root``, what the file is, and the expected ingest outcome (``ok`` with its
EXIF-oriented size and format, or ``error`` with a reason code of the ingest schema). Every
file is a few hundred bytes to a few kilobytes except where the point is size (the panorama is
20,000 pixels wide but compresses to a few kilobytes).

Reading a file as root ignores permission bits (CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH), so the
unreadable file is only unreadable for a process started with :func:`drop_file_override`
(``preexec_fn``): it removes those two capabilities from the child's bounding set, after which
``chmod 000`` really fails with EACCES, for root too. :func:`unprivileged` runs a callable
(e.g. the conftest ``snakemake`` helper) with every subprocess it starts in that state.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FONT, smooth_image, text_image  # noqa: E402

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2

# The rotated sign: what a person sees (landscape, text at a known place) and the EXIF
# orientation stored with pixels turned a quarter to the left.
ROTATED_TEXT = "EMERGENCY EXIT"
ROTATED_SIZE = (760, 300)  # displayed (oriented) width, height
ROTATED_ORIGIN = (40, 110)
ROTATED_FONT_PX = 56

# The limits the corpus is run with (config ``limits``), low enough that two ordinary files cross
# them: a 270 kB BMP (max_bytes) and a 1100x1000 PNG (max_pixels, a few kB).
CORPUS_LIMITS = {"max_bytes": 250_000, "max_pixels": 1_000_000}


@dataclass(frozen=True)
class Case:
    path: str  # relative to the corpus root (posix)
    what: str  # for the outcome table
    status: str  # "ok" or "error"
    reason: str | None = None  # ingest error code when status is "error"
    size: tuple[int, int] | None = None  # oriented (width, height) when status is "ok"
    format: str | None = None  # decoder format when status is "ok"
    duplicate_of: str | None = None  # same bytes as this other path


def drop_file_override() -> None:
    """``preexec_fn``: this process (and whatever it execs) loses root's read-anything override.

    Best effort: where it cannot (no CAP_SETPCAP), nothing changes and :func:`can_deny_reads`
    says so, and the corpus expects the chmod 000 file to be read."""
    if os.geteuid() != 0:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@functools.cache
def can_deny_reads() -> bool:
    """Whether a chmod 000 file is unreadable to a child started with :func:`drop_file_override`."""
    probe = Path(f"/tmp/.shardlens-deny-probe-{os.getpid()}")
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}, 'rb').read()"],
            preexec_fn=drop_file_override,
            capture_output=True,
        )
        return proc.returncode != 0 and b"PermissionError" in proc.stderr
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.unlink()


@contextlib.contextmanager
def unprivileged():
    """Every ``subprocess.run`` / ``Popen`` started inside runs without root's file override."""
    original = subprocess.Popen.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("preexec_fn", drop_file_override)
        original(self, *args, **kwargs)

    subprocess.Popen.__init__ = init
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original


# --- small encoders -----------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(size=(96, 64), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG that declares width x height pixels in a 100-byte file."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_bad_crc() -> bytes:
    """A PNG whose IHDR chunk checksum is wrong (one byte of the CRC flipped)."""
    data = bytearray(_encode(_noise(seed=3), "PNG"))
    crc_at = 8 + 8 + 13  # signature, IHDR length+type, IHDR data
    data[crc_at] ^= 0xFF
    return bytes(data)


def rotated_sign() -> tuple[bytes, tuple[int, int, int, int]]:
    """A JPEG whose pixels are stored turned left, with EXIF orientation 6 (rotate 90° clockwise
    to display); returns the bytes and the text's box in the displayed frame."""
    font = ImageFont.truetype(str(FONT), ROTATED_FONT_PX)
    shown = Image.new("RGB", ROTATED_SIZE, (250, 250, 245))
    draw = ImageDraw.Draw(shown)
    draw.text(ROTATED_ORIGIN, ROTATED_TEXT, font=font, fill=(10, 10, 10))
    box = draw.textbbox(ROTATED_ORIGIN, ROTATED_TEXT, font=font)
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # 90° counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes()), box


def rotated_photo(upright: Image.Image) -> bytes:
    """The photo stored turned right, with EXIF orientation 8 (rotate 90° counter-clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 8
    return _encode(upright.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95, exif=exif.tobytes())


def heic_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def jpeg_declaring(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a baseline or progressive JPEG) with its frame header (SOF) rewritten to declare
    ``width`` x ``height``; everything else, the end-of-image marker included, is kept."""
    for sof in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(sof)
        if at >= 0:
            out = bytearray(data)
            struct.pack_into(">HH", out, at + 5, height, width)
            return bytes(out)
    raise ValueError("no SOF0/SOF2 marker")


def tall_small_jpeg(width: int = 1000, height: int = 65_500) -> bytes:
    """A real photo (skimage's astronaut, 24x24, 1 KB at most, end marker included) whose header
    declares ``width`` x ``height``: the issue's "1 KB that claims 1000x65500"."""
    from skimage import data as skdata

    small = _encode(Image.fromarray(skdata.astronaut()).resize((24, 24)), "JPEG", quality=40)
    assert len(small) <= 1024 and small.endswith(b"\xff\xd9")
    return jpeg_declaring(small, width, height)


def _png_patch_first(data: bytes, kind: bytes, edit) -> bytes:
    """``edit(bytearray, offset of the chunk's length field, data length)`` applied to the
    first ``kind`` chunk of a PNG."""
    out = bytearray(data)
    at = data.find(kind) - 4
    (length,) = struct.unpack_from(">I", out, at)
    edit(out, at, length)
    return bytes(out)


def png_lying_idat_length() -> bytes:
    """The IDAT chunk's length field says 100 kB more than the file holds."""
    return _png_patch_first(_encode(_noise(seed=21), "PNG"), b"IDAT", lambda b, at, n: struct.pack_into(">I", b, at, n + 100_000))


def png_bad_idat_crc() -> bytes:
    """One byte of the IDAT chunk's checksum flipped (Pillow itself never checks it)."""

    def flip(b, at, n):
        b[at + 8 + n] ^= 0xFF

    return _png_patch_first(_encode(_noise(seed=22), "PNG"), b"IDAT", flip)


def png_more_rows_than_data() -> bytes:
    """IHDR declares 640 rows (checksum fixed), the image data holds 64."""

    def taller(b, at, n):
        struct.pack_into(">I", b, at + 12, 640)
        struct.pack_into(">I", b, at + 8 + n, zlib.crc32(bytes(b[at + 4 : at + 8 + n])) & 0xFFFFFFFF)

    return _png_patch_first(_encode(_noise(seed=23), "PNG"), b"IHDR", taller)


def gif_huge_screen() -> bytes:
    """An 8x8 GIF whose logical screen is 65535x65535."""
    out = bytearray(_encode(Image.new("P", (8, 8), 1), "GIF"))
    struct.pack_into("<HH", out, 6, 65535, 65535)
    return bytes(out)


def tiff_offsets_past_the_end() -> bytes:
    """A TIFF whose strip offset points 10 MB past the end of its 18 kB file."""
    out = bytearray(_encode(_noise(seed=24), "TIFF"))
    (ifd,) = struct.unpack_from("<I", out, 4)
    (count,) = struct.unpack_from("<H", out, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", out, at)[0] == 273:  # StripOffsets
            struct.pack_into("<I", out, at + 8, 10_000_000)
    return bytes(out)


def bmp_with_height(height: int, top_down_rows: bool = False) -> bytes:
    """A 96x64 BMP whose header declares ``height`` rows; ``top_down_rows`` stores the rows top
    first, as a negative height says (a valid file showing the same picture)."""
    out = bytearray(_encode(_noise(seed=25), "BMP"))
    struct.pack_into("<i", out, 22, height)
    if top_down_rows:
        (offset,) = struct.unpack_from("<I", out, 10)
        stride = (96 * 3 + 3) // 4 * 4
        rows = [bytes(out[offset + r * stride : offset + (r + 1) * stride]) for r in range(64)]
        out[offset : offset + 64 * stride] = b"".join(reversed(rows))
    return bytes(out)


def jpeg_zip_polyglot() -> bytes:
    """A JPEG with a valid ZIP archive appended: both a JPEG and a ZIP (zipfile reads it)."""
    import zipfile

    buf = io.BytesIO(_encode(_noise((96, 64), seed=26), "JPEG"))
    with zipfile.ZipFile(buf, "a") as archive:
        archive.writestr("readme.txt", "this file is also a zip archive")
    return buf.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="red"/></svg>\n'

# Names the folder walk leaves out, with the reason it gives (a byte that is not UTF-8 cannot
# be carried by a listing, a record or a report as text). Bytes, as the file system holds them.
UNLISTED = {b"names/bad\xff\xfename.png": ("names/bad\\xff\\xfename.png", "name_not_utf8")}

# A file name of NAME_MAX (255) bytes, and a path of about 3,500 bytes in 14 folders of 250
# bytes (PATH_MAX is 4096 for the whole absolute path; the corpus root adds some 100 bytes).
LONG_NAME = "n" * 251 + ".png"
DEEP_PATH = "/".join(["d" * 249 + f"{i:x}" for i in range(14)]) + "/deep.png"


# --- the corpus ---------------------------------------------------------------------------------


def make_corpus(root: Path) -> list[Case]:
    """Write the hostile corpus under ``root``; return one :class:`Case` per listed path."""
    from skimage import data as skdata

    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def put(rel: str, content: bytes, case: Case) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        cases.append(case)

    noise_png = _encode(_noise(seed=1), "PNG")
    noise_jpg = _encode(_noise((200, 150), seed=2), "JPEG", quality=90)
    put("errors/empty.jpg", b"", Case("errors/empty.jpg", "zero-byte file", "error", "empty_file"))
    put("errors/cut.jpg", noise_jpg[: len(noise_jpg) // 2], Case("errors/cut.jpg", "truncated JPEG (first half)", "error", "truncated"))
    put("errors/cut.png", noise_png[: len(noise_png) // 2], Case("errors/cut.png", "truncated PNG (first half)", "error", "truncated"))
    put("errors/notes.jpg", b"shopping list: eggs, milk\n", Case("errors/notes.jpg", "text file named .jpg", "error", "not_an_image"))
    put("errors/badcrc.png", png_bad_crc(), Case("errors/badcrc.png", "PNG with a wrong IHDR CRC", "error", "corrupt"))
    put("errors/bomb.png", png_bomb(), Case("errors/bomb.png", "decompression bomb: 100000x100000 declared, 100-byte file", "error", "too_many_pixels"))
    put(
        "errors/too_big.bmp",
        _encode(_noise((300, 300), seed=12), "BMP"),
        Case("errors/too_big.bmp", "270 kB file, over limits.max_bytes (250 kB)", "error", "too_large_bytes"),
    )
    put(
        "errors/too_many.png",
        _encode(Image.new("L", (1100, 1000), 90), "PNG"),
        Case("errors/too_many.png", "1100x1000 image, over limits.max_pixels (1 M)", "error", "too_many_pixels"),
    )
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    if heic_available():
        put("formats/photo.heic", heic, Case("formats/photo.heic", "HEIC (decoder installed, but a stub file)", "error", "corrupt"))
    else:
        put("formats/photo.heic", heic, Case("formats/photo.heic", "HEIC, no decoder installed", "error", "unsupported_format"))

    put("formats/iphone.jpg", heic, Case("formats/iphone.jpg", "HEIC bytes named .jpg", "error", "corrupt" if heic_available() else "unsupported_format"))
    put("odd/one_pixel.png", _encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), Case("odd/one_pixel.png", "1x1 image", "ok", size=(1, 1), format="PNG"))
    panorama = smooth_image(5, size=(20_000, 40))
    put("odd/panorama.png", _encode(panorama, "PNG"), Case("odd/panorama.png", "panorama 20000x40", "ok", size=(20_000, 40), format="PNG"))
    put("formats/cmyk.jpg", _encode(_noise(seed=4).convert("CMYK"), "JPEG"), Case("formats/cmyk.jpg", "CMYK JPEG", "ok", size=(96, 64), format="JPEG"))
    sixteen = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    put("formats/sixteen.png", _encode(sixteen, "PNG"), Case("formats/sixteen.png", "16-bit greyscale PNG", "ok", size=(64, 48), format="PNG"))
    palette = Image.new("P", (40, 30), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    ImageDraw.Draw(palette).rectangle((10, 10, 30, 20), fill=1)
    put(
        "formats/palette.png",
        _encode(palette, "PNG", transparency=0),
        Case("formats/palette.png", "palette PNG with transparency", "ok", size=(40, 30), format="PNG"),
    )
    put("formats/grey.jpg", _encode(_noise(seed=5).convert("L"), "JPEG"), Case("formats/grey.jpg", "greyscale JPEG", "ok", size=(96, 64), format="JPEG"))
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    put(
        "formats/anim.gif",
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        Case("formats/anim.gif", "animated GIF (3 frames; first is used)", "ok", size=(32, 24), format="GIF"),
    )
    put("formats/photo.webp", _encode(_noise(seed=6), "WEBP"), Case("formats/photo.webp", "WebP", "ok", size=(96, 64), format="WEBP"))
    put(
        "formats/photo.tif",
        _encode(_noise(seed=7), "TIFF", compression="tiff_lzw"),
        Case("formats/photo.tif", "TIFF (LZW)", "ok", size=(96, 64), format="TIFF"),
    )
    if features.check("avif"):
        put("formats/photo.avif", _encode(_noise(seed=8), "AVIF"), Case("formats/photo.avif", "AVIF (Pillow's decoder)", "ok", size=(96, 64), format="AVIF"))
    else:
        put(
            "formats/photo.avif",
            b"\x00\x00\x00\x1cftypavif" + b"\x00" * 64,
            Case("formats/photo.avif", "AVIF, no decoder installed", "error", "unsupported_format"),
        )

    sign, _box = rotated_sign()
    put("rotated/sign.jpg", sign, Case("rotated/sign.jpg", "EXIF-rotated text (orientation 6)", "ok", size=ROTATED_SIZE, format="JPEG"))
    cat = Image.fromarray(skdata.chelsea())  # 451x300
    put("rotated/cat.jpg", rotated_photo(cat), Case("rotated/cat.jpg", "EXIF-rotated photo (orientation 8)", "ok", size=cat.size, format="JPEG"))
    put(
        "rotated/cat_upright.jpg",
        _encode(cat, "JPEG", quality=95),
        Case("rotated/cat_upright.jpg", "the same photo stored upright", "ok", size=cat.size, format="JPEG"),
    )

    label = _encode(text_image(["NAMES"], size=(300, 120)), "PNG")
    put("names/with space.png", label, Case("names/with space.png", "file name with spaces", "ok", size=(300, 120), format="PNG"))
    put("names/ünïcødé 日本.png", _encode(_noise(seed=9), "PNG"), Case("names/ünïcødé 日本.png", "unicode file name", "ok", size=(96, 64), format="PNG"))
    put("names/new\nline.png", _encode(_noise(seed=10), "PNG"), Case("names/new\nline.png", "file name with a newline", "ok", size=(96, 64), format="PNG"))

    same = _encode(_noise(seed=11), "JPEG")
    put("dups/a.jpg", same, Case("dups/a.jpg", "same image under two paths (first)", "ok", size=(96, 64), format="JPEG"))
    put("dups/copy/a.jpg", same, Case("dups/copy/a.jpg", "same image under two paths (second)", "ok", size=(96, 64), format="JPEG", duplicate_of="dups/a.jpg"))

    # Links (the corpus is listed with listing.follow_symlinks: true, so links are listed).
    (root / "links").mkdir()
    os.symlink("loop.jpg", root / "links" / "loop.jpg")  # a link to itself
    cases.append(Case("links/loop.jpg", "symlink loop (a link to itself)", "error", "not_found"))
    os.symlink("..", root / "links" / "up")  # a folder loop: the walk must not recurse forever
    os.symlink("../dups/a.jpg", root / "links" / "inside.jpg")
    cases.append(Case("links/inside.jpg", "symlink to an image inside the root", "ok", size=(96, 64), format="JPEG", duplicate_of="dups/a.jpg"))
    os.symlink("/etc/hostname", root / "links" / "outside.jpg")
    cases.append(Case("links/outside.jpg", "symlink to a file outside the root", "error", "permission_denied"))
    fifo = root / "odd" / "pipe.jpg"
    os.mkfifo(fifo)  # opening it for reading would block forever
    cases.append(Case("odd/pipe.jpg", "named pipe (FIFO) named .jpg", "error", "io_error"))

    # --- headers that lie (a declared size, a chunk length or an offset the data does not hold)
    put(
        "lies/tall_1k.jpg",
        tall_small_jpeg(1000, 900),
        Case("lies/tall_1k.jpg", "1 kB JPEG whose header declares 1000x900 (end marker present)", "error", "truncated"),
    )
    photo = _encode(Image.fromarray(skdata.astronaut()).resize((128, 96)), "JPEG", quality=90)
    put(
        "lies/double_height.jpg",
        jpeg_declaring(photo, 128, 192),
        Case("lies/double_height.jpg", "JPEG whose header declares twice its rows", "error", "truncated"),
    )
    app = noise_jpg[:2] + b"\xff\xe1" + struct.pack(">H", 65000) + b"Exif\x00\x00" + noise_jpg[2:]
    put("lies/app_length.jpg", app, Case("lies/app_length.jpg", "JPEG whose APP1 segment length runs past the end", "error", "corrupt"))
    bad_exif = noise_jpg[:2] + b"\xff\xe1" + struct.pack(">H", 30) + b"Exif\x00\x00MM\x00*\xff\xff\xff\xff" + b"\x00" * 14 + noise_jpg[2:]
    put(
        "lies/bad_exif.jpg",
        bad_exif,
        Case("lies/bad_exif.jpg", "JPEG whose EXIF block points nowhere (decoded, not rotated)", "ok", size=(200, 150), format="JPEG"),
    )
    put("lies/idat_length.png", png_lying_idat_length(), Case("lies/idat_length.png", "PNG whose IDAT length field runs past the end", "error", "corrupt"))
    put("lies/idat_crc.png", png_bad_idat_crc(), Case("lies/idat_crc.png", "PNG with a wrong IDAT CRC", "error", "corrupt"))
    put("lies/more_rows.png", png_more_rows_than_data(), Case("lies/more_rows.png", "PNG whose IHDR declares 640 rows, data for 64", "error", "truncated"))
    put("lies/screen.gif", gif_huge_screen(), Case("lies/screen.gif", "8x8 GIF with a 65535x65535 logical screen", "error", "too_many_pixels"))
    put("lies/offsets.tif", tiff_offsets_past_the_end(), Case("lies/offsets.tif", "TIFF whose strip offset is past the end", "error", "truncated"))
    put(
        "lies/top_down.bmp",
        bmp_with_height(-64, top_down_rows=True),
        Case("lies/top_down.bmp", "BMP with a negative height (rows stored top first)", "ok", size=(96, 64), format="BMP"),
    )
    put("lies/tall.bmp", bmp_with_height(10_000), Case("lies/tall.bmp", "BMP whose header declares 10000 rows, data for 64", "error", "truncated"))
    put("lies/huge.bmp", bmp_with_height(2**31 - 1), Case("lies/huge.bmp", "BMP whose header declares 2^31-1 rows", "error", "too_many_pixels"))
    # --- polyglots and impostors
    put("polyglot/jpeg_zip.jpg", jpeg_zip_polyglot(), Case("polyglot/jpeg_zip.jpg", "a JPEG that is also a ZIP archive", "ok", size=(96, 64), format="JPEG"))
    html = b"<html><body><script>alert(document.cookie)</script></body></html>\n"
    put("polyglot/png_html.png", noise_png + html, Case("polyglot/png_html.png", "PNG with HTML and a script appended", "ok", size=(96, 64), format="PNG"))
    put("formats/vector.png", SVG, Case("formats/vector.png", "SVG text named .png", "error", "not_an_image"))
    apng = [Image.new("RGB", (32, 24), c) for c in ((0, 128, 0), (0, 0, 128))]
    put(
        "formats/anim.png",
        _encode(apng[0], "PNG", save_all=True, append_images=apng[1:]),
        Case("formats/anim.png", "animated PNG (APNG; first frame is used)", "ok", size=(32, 24), format="PNG"),
    )
    put(
        "formats/pages.tif",
        _encode(apng[0], "TIFF", save_all=True, append_images=apng[1:]),
        Case("formats/pages.tif", "two-page TIFF (first page is used)", "ok", size=(32, 24), format="TIFF"),
    )
    # --- names and folders
    put(
        "odd/folder.jpg/inside.png",
        _encode(_noise(seed=27), "PNG"),
        Case("odd/folder.jpg/inside.png", "a folder named like an image (walked into)", "ok", size=(96, 64), format="PNG"),
    )
    put(f"names/{LONG_NAME}", _encode(_noise(seed=28), "PNG"), Case(f"names/{LONG_NAME}", "a 255-byte file name (NAME_MAX)", "ok", size=(96, 64), format="PNG"))
    put(
        f"names/{DEEP_PATH}",
        _encode(_noise(seed=29), "PNG"),
        Case(f"names/{DEEP_PATH}", "a 3,500-byte path (near PATH_MAX)", "ok", size=(96, 64), format="PNG"),
    )
    put(
        "names/Case.png",
        _encode(_noise(seed=30), "PNG"),
        Case("names/Case.png", "two names that differ only in case (first)", "ok", size=(96, 64), format="PNG"),
    )
    put(
        "names/case.png",
        _encode(_noise(seed=31), "PNG"),
        Case("names/case.png", "two names that differ only in case (second)", "ok", size=(96, 64), format="PNG"),
    )
    for raw_name in UNLISTED:  # not listed: no Case; the walk reports it (see UNLISTED)
        with open(os.fsencode(root) + b"/" + raw_name, "wb") as handle:
            handle.write(noise_png)

    secret = root / "errors" / "secret.jpg"
    secret.write_bytes(noise_jpg)
    secret.chmod(0)
    if os.geteuid() != 0 or can_deny_reads():
        cases.append(Case("errors/secret.jpg", "unreadable file (chmod 000; as root: without CAP_DAC_OVERRIDE)", "error", "permission_denied"))
    else:  # root with no way to drop the override: the bytes are readable
        cases.append(Case("errors/secret.jpg", "chmod 000 file, readable to root", "ok", size=(200, 150), format="JPEG"))
    return sorted(cases, key=lambda c: c.path)


# --- small and read-only file systems -----------------------------------------------------------


class SmallDisk:
    """A file system of ``size`` bytes at ``path``: a tmpfs where mounting is allowed (root, as in
    CI), else a plain folder whose writers get ``RLIMIT_FSIZE`` = ``size`` (:meth:`limit`, a
    ``preexec_fn``). ``kind`` says which ran; tests print it."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = Path(path), size
        self.path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)], capture_output=True, text=True)
        self.kind = "tmpfs" if proc.returncode == 0 else "RLIMIT_FSIZE"
        self.why_not_tmpfs = proc.stderr.strip()

    def limit(self) -> None:
        """``preexec_fn``: under the fallback, no file written by the child may exceed ``size``."""
        if self.kind == "RLIMIT_FSIZE":
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, resource.RLIM_INFINITY))

    def fill(self, leave: int = 0) -> None:
        """Fill the tmpfs with a filler file until at most ``leave`` bytes are free."""
        if self.kind != "tmpfs":
            return
        free = os.statvfs(self.path)
        room = free.f_bavail * free.f_frsize - leave
        if room > 0:
            with open(self.path / ".filler", "ab") as handle:
                try:
                    handle.write(b"\0" * room)
                    handle.flush()
                except OSError:
                    pass

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.path)], check=True)

    def __enter__(self) -> SmallDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only for the block: a read-only bind mount of itself where mounting is
    allowed (root: chmod alone does not stop root), else ``chmod a-w`` on every folder, which
    binds processes started with :func:`drop_file_override`. Yields which one ran."""
    folder = Path(folder)
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if bound and subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode == 0:
        try:
            yield "read-only bind mount"
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    if bound:
        subprocess.run(["umount", str(folder)], check=True)
    folders = [folder] + [Path(d) for d, _, _ in os.walk(folder) if Path(d) != folder]
    modes = {d: d.stat().st_mode for d in folders}
    for d in folders:
        d.chmod(modes[d] & ~0o222)
    try:
        yield "chmod a-w"
    finally:
        for d in folders:
            d.chmod(modes[d])


def rotated_sign_box() -> tuple[int, int, int, int]:
    """The rotated sign's text box in the displayed (oriented) frame."""
    return rotated_sign()[1]


def copy_corpus(src: Path, dst: Path) -> Path:
    """Copy the corpus with its links, named pipe, modes and nanosecond mtimes (so the shard
    listings, which hold sizes and mtimes, are the same)."""
    import shutil
    import stat

    def copy(source: str, target: str) -> str:
        st = os.lstat(source)
        if stat.S_ISFIFO(st.st_mode):
            os.mkfifo(target)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            return target
        return shutil.copy2(source, target)

    shutil.copytree(src, dst, symlinks=True, copy_function=copy)
    return dst


def ingest_corpus_unprivileged(root: Path, work: Path, limits: dict | None = None) -> list[dict]:
    """Run the ingest stage on the whole corpus as one shard, in a process without root's file
    override (so the chmod 000 file really is unreadable); return its records."""
    from shardlens.images.listing import list_images
    from shardlens.records import read_jsonl
    from shardlens.shards import listing_text, plan_shards, write_listing

    plan = plan_shards(list_images(root, follow_symlinks=True), 1)
    write_listing(work / "shards" / "0000.tsv", listing_text(plan.shards["0000"]))
    out = work / "ingest" / "0000.jsonl"
    code = (
        "import sys; from shardlens.images.decoding import Limits; from shardlens.stages.ingest import run_shard; "
        f"run_shard({str(work / 'shards' / '0000.tsv')!r}, {str(root)!r}, {str(out)!r}, '0000', Limits.from_values({limits or {}!r}), allow_outside_root=False)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=drop_file_override, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"ingest failed:\n{proc.stderr[-4000:]}")
    return list(read_jsonl(out, "ingest"))
