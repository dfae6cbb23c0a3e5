"""Scanned PDF pages (images of text, rotated a little, with noise) read by Tesseract, page numbers kept."""

from __future__ import annotations

import io
import random

import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from ingest.parsers import Limits, ParseError, parse
from ingest.parsers.ocr import MIN_IMAGE_PIXELS, tesseract_path, text_is_garbage
from tests.ingest import files

SCANNED = [
    "Scanned expense policy, second page.",
    "Hotels in London are refunded up to 180 EUR a night.",
    "Claims must be filed within 30 days of travel, with",
    "the receipts attached to the claim form (form EX-7).",
]
# Issue 18's bar for OCR of clean scans; Tesseract reads such pages at about 0.99 or better.
MIN_CHARACTER_ACCURACY = 0.97


def scanned_pdf(lines: list[str], *, degrees: float, seed: int = 7) -> bytes:
    """One A4 page at 300 dpi that is only an image: the lines rendered, rotated, with speckle noise."""
    image = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=42)
    for number, line in enumerate(lines):
        draw.text((180, 240 + number * 90), line, fill=0, font=font)
    image = image.rotate(degrees, expand=False, fillcolor=255, resample=Image.Resampling.BICUBIC)
    rng = random.Random(seed)
    pixels = image.load()
    assert pixels is not None
    for _ in range(40_000):
        pixels[rng.randrange(image.width), rng.randrange(image.height)] = rng.choice((0, 96, 255))
    out = io.BytesIO()
    image.save(out, "PDF", resolution=300.0)
    return out.getvalue()


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, left in enumerate(a, start=1):
        current = [i]
        for j, right in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right)))
        previous = current
    return previous[-1]


def character_accuracy(read: str, truth: str) -> float:
    read, truth = " ".join(read.split()), " ".join(truth.split())
    return 1 - edit_distance(read, truth) / len(truth)


def test_tesseract_is_installed_by_make() -> None:
    assert tesseract_path() is not None, "make test installs tesseract-ocr (mk/ocr.mk)"


@pytest.mark.parametrize("degrees", [0.0, 2.0, -3.0])
def test_a_scanned_page_is_read_by_ocr_with_high_character_accuracy(degrees: float) -> None:
    parsed = parse(scanned_pdf(SCANNED, degrees=degrees), filename="scan.pdf")

    assert [section.page for section in parsed.sections] == [1]
    accuracy = character_accuracy(parsed.sections[0].text, " ".join(SCANNED))
    assert accuracy >= MIN_CHARACTER_ACCURACY, (accuracy, parsed.sections[0].text)


def test_a_pdf_of_text_and_scanned_pages_keeps_every_page_number() -> None:
    writer = PdfWriter()
    for data in (files.pdf_bytes(["A typed first page about travel."]), scanned_pdf(SCANNED, degrees=1.0)):
        writer.add_page(PdfReader(io.BytesIO(data)).pages[0])
    out = io.BytesIO()
    writer.write(out)

    parsed = parse(out.getvalue(), filename="mixed.pdf")

    assert [section.page for section in parsed.sections] == [1, 2]
    assert parsed.sections[0].text == "A typed first page about travel."
    assert "180 EUR" in parsed.sections[1].text


def test_with_ocr_turned_off_a_scan_is_refused_with_a_message_that_says_so() -> None:
    with pytest.raises(ParseError, match="OCR"):
        parse(scanned_pdf(SCANNED, degrees=0.0), filename="scan.pdf", limits=Limits(ocr_languages=""))


def test_a_page_of_noise_or_a_tiny_image_gives_no_text_and_no_error() -> None:
    noise = Image.effect_noise((800, 800), 120).convert("L")
    tiny = Image.new("L", (int(MIN_IMAGE_PIXELS**0.5) - 1, 20), 0)
    for image in (noise, tiny):
        out = io.BytesIO()
        image.save(out, "PDF", resolution=150.0)
        with pytest.raises(ParseError, match="No text could be extracted"):
            parse(out.getvalue(), filename="noise.pdf")


# What a font without a Unicode map leaves in a text layer: symbols where the letters were.
GARBLED = "¤¦¨ ©¬®¯ °±´¸ ×÷¤ ¦¨©¬ ®¯°"


def _with_text_layer(scan: bytes, text: str) -> bytes:
    """The scanned page with `text` drawn over it, as a broken OCR layer or font would put it there."""
    overlay = FPDF()
    overlay.set_font("Helvetica", size=12)
    overlay.add_page()
    overlay.multi_cell(0, 8, text)
    writer = PdfWriter(clone_from=io.BytesIO(scan))
    writer.pages[0].merge_page(PdfReader(io.BytesIO(bytes(overlay.output()))).pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("text", "garbage"),
    [
        ("Hotels in London are refunded up to 180 EUR a night.", False),
        ("Größe: 3 × 4 = 12 ± 0,5 mm; Übernachtung ≤ 180 €", False),
        ("出張の宿泊費は一泊十八万円までです。", False),
        ("| -5 | 4400k | 2100k | 1350k |", False),
        (GARBLED, True),
        ("\ufffd\ufffd\ue000\ue001 \ue002\ue003 ab", True),
        ("", False),
    ],
)
def test_a_text_layer_is_garbage_when_most_of_it_is_neither_letters_digits_nor_punctuation(
    text: str, garbage: bool
) -> None:
    assert text_is_garbage(text) is garbage


def test_a_scan_under_a_garbage_text_layer_is_read_by_ocr_and_a_real_text_layer_is_kept() -> None:
    garbled = parse(_with_text_layer(scanned_pdf(SCANNED, degrees=0.0), GARBLED), filename="scan.pdf")
    accuracy = character_accuracy(garbled.sections[0].text, " ".join(SCANNED))
    assert accuracy >= MIN_CHARACTER_ACCURACY, (accuracy, garbled.sections[0].text)

    layer = "The text layer a good scanner wrote over its own image."
    kept = parse(_with_text_layer(scanned_pdf(SCANNED, degrees=0.0), layer), filename="scan.pdf")
    assert kept.sections[0].text == layer


def test_a_page_that_cannot_be_read_is_reported_in_words_and_the_rest_is_kept() -> None:
    noise = io.BytesIO()
    Image.effect_noise((800, 800), 120).convert("L").save(noise, "PDF", resolution=150.0)
    writer = PdfWriter()
    for data in (files.pdf_bytes(["A typed first page about travel."]), noise.getvalue()):
        writer.add_page(PdfReader(io.BytesIO(data)).pages[0])
    out = io.BytesIO()
    writer.write(out)

    parsed = parse(out.getvalue(), filename="mixed.pdf")
    assert parsed.sections[0].text == "A typed first page about travel."
    [note] = parsed.notes
    assert note.startswith("Page 2: a scan whose text OCR could not read")

    unread = parse(out.getvalue(), filename="mixed.pdf", limits=Limits(ocr_languages=""))
    assert unread.notes == ["Page 2: a scan, not read because OCR is turned off (RAGSITE_OCR_LANGUAGES)."]
