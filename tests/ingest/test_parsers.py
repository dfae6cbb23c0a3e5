"""Parsers on real files of each format, made here; the format is found from content, not the name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingest.parsers import Limits, ParseError, detect_format, parse
from tests.ingest import files

ROOT = Path(__file__).resolve().parents[2]


def test_pdf_has_one_section_per_page_with_its_number() -> None:
    data = files.pdf_bytes(["Invoices are due in 30 days.", "Late invoices cost 2 % a month."], title="Terms")
    parsed = parse(data, filename="terms.pdf")
    assert parsed.title == "Terms"
    assert [(s.page, s.text) for s in parsed.sections] == [
        (1, "Invoices are due in 30 days."),
        (2, "Late invoices cost 2 % a month."),
    ]


def test_docx_keeps_headings_as_a_path_and_tables_as_markdown_tables() -> None:
    data = files.docx_bytes(
        [
            ("title", "Travel Policy"),
            ("h1", "Booking"),
            ("p", "Book trains through the travel desk."),
            ("h2", "Hotels"),
            ("p", "Hotels up to 120 EUR a night."),
            ("table", "City|Limit\nLondon|180 EUR"),
            ("h1", "Claims"),
            ("p", "Claim within 30 days."),
        ]
    )
    parsed = parse(data, filename="travel.docx")
    assert parsed.title == "Travel Policy"
    assert [(s.heading_path, s.text) for s in parsed.sections] == [
        (("Booking",), "Book trains through the travel desk."),
        (
            ("Booking", "Hotels"),
            "Hotels up to 120 EUR a night.\n\n| City | Limit |\n| --- | --- |\n| London | 180 EUR |",
        ),
        (("Claims",), "Claim within 30 days."),
    ]


def test_html_data_tables_become_markdown_tables_and_layout_tables_stay_paragraphs() -> None:
    data = b"""<html><body><main><h1>Ports</h1>
    <table><caption>Default ports</caption>
      <thead><tr><th>Service</th><th>Port</th><th>Notes</th></tr></thead>
      <tbody><tr><td>web</td><td>8000</td><td>HTTP | HTTPS behind a proxy</td></tr>
      <tr><td colspan="2">inference 8001</td><td>loopback only</td></tr>
      <tr><td>redis</td><td>6379</td></tr></tbody></table>
    <table><tr><td>A boxed note in a one-column layout table.</td></tr></table>
    <table><tr><td>query</td><td>dump inputs</td></tr><tr><td>graph</td><td>output a graph</td></tr></table>
    <table><tr><td><table><tr><td>inner</td><td>cell</td></tr></table></td><td>outer</td></tr></table>
    </main></body></html>"""
    parsed = parse(data, filename="ports.html")
    assert parsed.sections[0].text.split("\n\n")[:4] == [
        "Default ports",
        "| Service | Port | Notes |\n| --- | --- | --- |\n| web | 8000 | HTTP \\| HTTPS behind a proxy |\n"
        "| inference 8001 |  | loopback only |\n| redis | 6379 |  |",
        "A boxed note in a one-column layout table.",
        # No <th> and no <thead>: the first row is data, under an empty header.
        "|  |  |\n| --- | --- |\n| query | dump inputs |\n| graph | output a graph |",
    ]
    # A table holding tables is layout: its text is kept, not made a table.
    assert "inner" in parsed.text and "outer" in parsed.text
    separators = [line for line in parsed.text.split("\n") if line.startswith("| ---")]
    assert separators == ["| --- | --- | --- |", "| --- | --- |"]


def test_html_keeps_main_content_and_headings_and_drops_scripts_styles_and_navigation() -> None:
    data = b"""<!DOCTYPE html><html><head><title>Returns</title><style>p{color:red}</style>
    <script>var secret = "tracking";</script></head><body><nav>Home | Shop</nav><main>
    <h1>Returns</h1><p>Return items within <b>30 days</b>.</p><h2>Refunds</h2><p>Paid in 5 days.</p>
    <script>document.write("injected")</script></main><footer>Copyright</footer></body></html>"""
    parsed = parse(data, filename="page.bin")
    assert parsed.title == "Returns"
    assert [(s.heading_path, s.text) for s in parsed.sections] == [
        (("Returns",), "Return items within 30 days."),
        (("Returns", "Refunds"), "Paid in 5 days."),
    ]
    assert "tracking" not in parsed.text and "injected" not in parsed.text and "Home" not in parsed.text


def test_sphinx_permalink_anchors_stay_out_of_heading_paths_titles_and_text() -> None:
    data = """<!DOCTYPE html><html><head><title></title></head><body><div role="main">
    <section id="install"><h1>Installing<a class="headerlink" href="#install" title="Link">¶</a></h1>
    <p>Run the installer.</p><section id="linux"><h2>On Linux<a class="headerlink" href="#linux">¶</a></h2>
    <dl><dt id="f">setup(path)<a class="headerlink" href="#f">¶</a></dt><dd>Install into path.</dd></dl>
    </section></section></div></body></html>""".encode()
    parsed = parse(data, filename="install.html")
    assert parsed.title == "Installing"
    assert [s.heading_path for s in parsed.sections] == [("Installing",), ("Installing", "On Linux")]
    assert "¶" not in parsed.text


def test_a_pdf_without_a_metadata_title_takes_its_first_page_heading() -> None:
    data = files.pdf_bytes(["Tents sleep four.", "Poles are aluminium."], heading="Camping Gear Guide")
    assert parse(data, filename="my-manual-v2.pdf").title == "Camping Gear Guide"
    titled = files.pdf_bytes(["Tents sleep four."], title="Gear", heading="Camping Gear Guide")
    assert parse(titled, filename="my-manual-v2.pdf").title == "Gear"
    plain = files.pdf_bytes(["Tents sleep four.", "Poles are aluminium."])
    assert parse(plain, filename="my-manual-v2.pdf").title == "my manual v2"


def test_a_docx_without_a_title_takes_its_first_heading() -> None:
    blocks = [("p", "Draft, not for circulation."), ("h1", "Expenses Policy"), ("p", "Keep receipts.")]
    assert parse(files.docx_bytes(blocks), filename="exp-v3.docx").title == "Expenses Policy"
    assert parse(files.docx_bytes(blocks, title="Expenses"), filename="exp-v3.docx").title == "Expenses"


def test_markdown_takes_its_front_matter_title_then_its_first_heading() -> None:
    front = b'---\ntitle: "Release Notes"\nauthor: x\n---\n# v2.0\n\nFaster.\n'
    assert parse(front, filename="notes.md").title == "Release Notes"
    second_level = b"Some intro.\n\n## Install\n\nRun it.\n"
    assert parse(second_level, filename="readme-v2.md").title == "Install"


def test_the_real_documents_are_titled_by_their_metadata_or_first_heading() -> None:
    docs = Path("/work/shared/eval/answers-dev/docs")
    if not docs.is_dir():
        pytest.skip("the answers-dev documents are not on this machine")
    titles = {path.name: parse(path.read_bytes(), filename=path.name).title for path in docs.iterdir()}
    assert titles["bzip2-manual.pdf"] == "bzip2 and libbzip2, version 1.0.8"
    assert titles["ninja-manual.html"] == "The Ninja build system"
    assert titles["it-security-policy.docx"] == "Alderbank Housing Association - IT Security Policy"


def test_markdown_headings_nest_and_code_fences_are_not_headings() -> None:
    data = (
        b"# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\npip install x\n```\n\n"
        b"### Linux\n\nUse apt.\n"
    )
    parsed = parse(data, filename="guide.txt")
    assert parsed.content_type == "text/markdown"
    assert parsed.title == "Guide"
    assert [(s.heading_path, s.text) for s in parsed.sections] == [
        (("Guide",), "Intro."),
        (("Guide", "Install"), "```sh\n# not a heading\npip install x\n```"),
        (("Guide", "Install", "Linux"), "Use apt."),
    ]


def test_text_that_only_looks_like_markdown_keeps_its_words() -> None:
    # One long line opening with "# " (a code comment) would be a lone heading with no body.
    data = b"# Register an instance; all its methods are published. class MyFuncs: def mul(self, x, y): ..."
    parsed = parse(data, filename="xmlrpc.txt")
    assert parsed.content_type == "text/plain"
    assert parsed.text == data.decode()


def test_plain_text_takes_its_first_line_as_title() -> None:
    parsed = parse(b"Office FAQ\n\nWhere is the kitchen?\nOn the 2nd floor.\n", filename="faq.md")
    assert parsed.content_type == "text/plain"
    assert parsed.title == "Office FAQ"
    assert parsed.text == "Where is the kitchen?\nOn the 2nd floor."


def test_csv_rows_keep_their_column_names() -> None:
    parsed = parse(b"product,price\nkettle,25\nmug,4\n", filename="prices.txt")
    assert parsed.content_type == "text/csv"
    assert parsed.text == "product: kettle; price: 25\n\nproduct: mug; price: 4"


def test_xlsx_has_a_section_per_sheet() -> None:
    data = files.xlsx_bytes(
        {"Prices": [["product", "price"], ["kettle", 25]], "Stock": [["product", "units"], ["mug", 40]]}
    )
    parsed = parse(data, filename="book.xlsx")
    assert [(s.heading_path, s.text) for s in parsed.sections] == [
        (("Prices",), "product: kettle; price: 25"),
        (("Stock",), "product: mug; units: 40"),
    ]


def test_pptx_has_a_section_per_slide_titled_by_the_slide() -> None:
    data = files.pptx_bytes(
        [("Q3 results", ["Revenue up 12 %", "Costs flat"]), ("Plans", ["Open Berlin office"])]
    )
    parsed = parse(data, filename="deck.pptx")
    assert [(s.page, s.heading_path, s.text) for s in parsed.sections] == [
        (1, ("Q3 results",), "Revenue up 12 %\n\nCosts flat"),
        (2, ("Plans",), "Open Berlin office"),
    ]


def test_format_comes_from_content_not_from_the_name() -> None:
    assert detect_format(files.pdf_bytes(["x"])) == "pdf"
    assert detect_format(files.docx_bytes([("p", "x")])) == "docx"
    assert parse(files.pdf_bytes(["Named wrongly."]), filename="notes.txt").content_type == "application/pdf"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "The file is empty"),
        (b"   \n\n  ", "The file is empty"),
        (b"\x00\x01\x02\x03binary\x00" * 50, "The file is binary, not text"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "The file is a PNG image"),
        (
            b"<html><head><script>alert(1)</script><style>p{}</style></head><body><script>x()</script></body></html>",
            "No text could be extracted",
        ),
    ],
    ids=["empty", "blank", "binary-named-txt", "png", "only-scripts"],
)
def test_bad_input_is_refused_with_a_message_a_person_can_act_on(data: bytes, expected: str) -> None:
    with pytest.raises(ParseError) as error:
        parse(data, filename="upload.txt")
    assert error.value.message.startswith(expected)


def test_truncated_pdf_is_refused_as_incomplete() -> None:
    data = files.pdf_bytes(["Page one.", "Page two."])
    with pytest.raises(ParseError, match="damaged or incomplete.*cut off"):
        parse(data[: len(data) // 2], filename="cut.pdf")


def test_encrypted_pdf_is_refused_as_password_protected() -> None:
    with pytest.raises(ParseError, match="password-protected"):
        parse(files.encrypted_pdf_bytes("Secret numbers."), filename="locked.pdf")


def test_pdf_without_text_says_it_may_need_ocr() -> None:
    with pytest.raises(ParseError, match="OCR"):
        parse(files.pdf_bytes([""]), filename="scan.pdf")


def test_docx_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    bomb = files.docx_zip_bomb(unpacked_bytes=64 * 2**20)
    assert len(bomb) < 2**20
    with pytest.raises(
        ParseError, match=r"would unpack to \d+ MiB, more than the 16 MiB allowed \(it may be a zip bomb\)"
    ):
        parse(bomb, filename="bomb.docx", limits=Limits(max_unpacked_bytes=16 * 2**20))


def test_zip_that_is_not_an_office_file_is_refused() -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ParseError, match="ZIP archive, not a document"):
        parse(out.getvalue(), filename="notes.docx")


def test_a_format_parser_is_imported_on_first_use_and_a_worker_can_preload_them_all() -> None:
    # In a fresh interpreter: pypdf and python-docx cost about a second of imports a text file need not pay.
    script = (
        "import sys\n"
        "from ingest.parsers import parse, parsers_preload\n"
        "parse(b'Notes\\n\\nplain text', filename='notes.txt')\n"
        "print('pypdf' in sys.modules, 'docx' in sys.modules)\n"
        "parsers_preload()\n"
        "print('pypdf' in sys.modules, 'docx' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert completed.stdout.split("\n")[:2] == ["False False", "True True"]
