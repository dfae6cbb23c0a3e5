"""Real files of every supported format, made in the tests with the formats' own libraries."""

from __future__ import annotations

import io
import zipfile

import docx
import openpyxl
import pptx
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter


def pdf_bytes(pages: list[str], *, title: str = "", heading: str = "") -> bytes:
    """`pages` in 12 pt; metadata title `title`; the first page opens with `heading` in 24 pt."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if title:
        pdf.set_title(title)
    for number, text in enumerate(pages):
        pdf.add_page()
        if heading and number == 0:
            pdf.set_font("Helvetica", size=24)
            pdf.multi_cell(0, 12, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def encrypted_pdf_bytes(text: str, *, password: str = "s3cret") -> bytes:
    reader = PdfReader(io.BytesIO(pdf_bytes([text])))
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(blocks: list[tuple[str, str]], *, title: str = "") -> bytes:
    """`blocks` of (kind, text), kind one of title, h1…h3, p, table (rows by newline, cells by "|")."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    for kind, text in blocks:
        if kind == "title":
            document.add_heading(text, level=0)
        elif kind.startswith("h"):
            document.add_heading(text, level=int(kind[1:]))
        elif kind == "table":
            rows = [row.split("|") for row in text.split("\n")]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        else:
            document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_zip_bomb(*, unpacked_bytes: int) -> bytes:
    """A valid .docx with one more part of `unpacked_bytes` zeros, which compresses to almost nothing."""
    base = docx_bytes([("p", "Looks harmless.")])
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(base)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            target.writestr(item, source.read(item.filename))
        with target.open("word/media/padding.bin", "w", force_zip64=True) as padding:
            block = b"\0" * (1 << 20)
            for _ in range(unpacked_bytes // len(block)):
                padding.write(block)
    return out.getvalue()


def xlsx_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def pptx_bytes(slides: list[tuple[str, list[str]]]) -> bytes:
    presentation = pptx.Presentation()
    layout = presentation.slide_layouts[1]  # title and content
    for title, bullets in slides:
        slide = presentation.slides.add_slide(layout)
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = bullets[0]
        for bullet in bullets[1:]:
            body.add_paragraph().text = bullet
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()
