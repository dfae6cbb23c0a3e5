"""Text of scanned pages: their images read by Tesseract (Debian's `tesseract-ocr`, which `make` installs).

A scanned PDF page is an image with no text layer, or with a garbage one (`text_is_garbage`); its images are
read as they are stored in the file (the scanner's own pixels, no re-rendering). Tesseract runs as a child
process with one thread, so that a worker reading scans does not take every core from the others, and with a
time limit, so that a pathological image costs a page, never a stuck worker. A page whose images cannot be
read gives no text, and the parser says which pages those were.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import unicodedata
from typing import Any

logger = logging.getLogger(__name__)

# A page at scanning resolution takes Tesseract 1-3 s on one core; ten times that is a runaway image.
OCR_TIMEOUT_S = 60.0
# Smaller images are icons, logos and rules, not scanned text: not worth a process each.
MIN_IMAGE_PIXELS = 200 * 200


# A text layer is garbage when fewer than this share of its visible characters are letters, digits or
# punctuation of any script: what a font without a Unicode map or a broken OCR layer over a scan leaves
# (symbols, private-use characters, U+FFFD, controls). Text in any language, tables of numbers and formulas
# with their symbols are far above half; such garbage is far below.
MIN_READABLE_SHARE = 0.5


def text_is_garbage(text: str) -> bool:
    """Whether a page's text layer is mostly not text (it has text, but no reader could use it)."""
    visible = [char for char in text if not char.isspace()]
    if not visible:
        return False
    readable = sum(1 for char in visible if unicodedata.category(char)[0] in "LNP")
    return readable < MIN_READABLE_SHARE * len(visible)


class OcrUnavailable(Exception):
    """Tesseract is not installed on this machine."""


def tesseract_path() -> str | None:
    return shutil.which("tesseract")


def image_text(data: bytes, *, languages: str) -> str:
    """The text Tesseract reads in one encoded image (PNG, JPEG, TIFF ...); "" if it cannot read it."""
    executable = tesseract_path()
    if executable is None:
        raise OcrUnavailable("Tesseract is not installed (apt-get install tesseract-ocr)")
    try:
        result = subprocess.run(
            [executable, "stdin", "stdout", "-l", languages],
            input=data,
            capture_output=True,
            timeout=OCR_TIMEOUT_S,
            check=False,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
    except subprocess.TimeoutExpired:
        logger.warning("OCR of an image took more than %.0f s and was stopped", OCR_TIMEOUT_S)
        return ""
    if result.returncode != 0:
        logger.warning("OCR failed: %s", result.stderr.decode("utf-8", "replace").strip()[:300])
        return ""
    return result.stdout.decode("utf-8", "replace")


def page_images_text(page: Any, *, languages: str) -> str:
    """The text of a PDF page's images (pypdf `PageObject`), in the order the page draws them."""
    texts = []
    for image in page.images:
        try:
            width, height = image.image.size if image.image is not None else (0, 0)
            if width * height < MIN_IMAGE_PIXELS:
                continue
            data = image.data
        except Exception as exc:  # pypdf raises assorted errors on filters it cannot decode
            logger.info("a page image could not be decoded for OCR: %s", exc)
            continue
        text = image_text(data, languages=languages).strip()
        if text:
            texts.append(text)
    return "\n\n".join(texts)
