"""Deterministic demo image collection for trying out and testing shardlens.

``generate_demo(out_dir)`` writes about 40 images plus ``ground_truth.json`` and
``CREDITS.md`` into ``out_dir``. Nothing is downloaded: the real photos are the
sample images that scikit-image, matplotlib and scikit-learn ship inside their
wheels, the fonts are the DejaVu fonts shipped by matplotlib, and everything
else is drawn here with Pillow and numpy from fixed seeds. With the same
package versions every run on every machine writes the same bytes.

Layout of ``out_dir``::

    photos/    real photos (people, a cat, a cup, a motorcycle, a scanned page)
    text/      generated images with known text: signs pasted on photos, a
               letter, a screenshot, rotated text, paragraphs in six languages
    notext/    generated images without any text: gradients, shapes, blurred
               noise, text-free photo crops, a solid colour, a 64x64 image

``ground_truth.json`` maps each image path (posix, relative to ``out_dir``) to::

    category   "photo" | "text" | "notext"
    lines      exact text lines, top to bottom in the unrotated layout (lines
               of one visual row are listed left to right); [] when unknown
    clean      True for horizontal, plain-background, high-contrast text that
               OCR is expected to read almost perfectly (CER <= 0.02)
    rotation   degrees the text is rotated counter-clockwise (0, 15, 90, 180)
    language   ISO 639-1 code of the text, or null
    objects    COCO class names a detector is expected to find
    has_text   whether the image contains legible text
    source     where the pixels came from

Run ``python -m shardlens.demo OUT_DIR`` to write the collection from a shell.

Modules: :mod:`.tables` (the images to write, read from ``data/*.yaml``), :mod:`.sources` (the
bundled photos and fonts), :mod:`.text_images` and :mod:`.notext_images` (the renderers) and
:mod:`.generate` (writing the collection, its ground truth and ``data/CREDITS.md``).
"""
