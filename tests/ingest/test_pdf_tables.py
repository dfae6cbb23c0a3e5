"""A PDF's tables become Markdown tables by their layout; prose, lists and code stay as they are."""

from __future__ import annotations

from fpdf import FPDF

from ingest.chunking import chunk_document
from ingest.parsers import parse
from ingest.parsers.pdf_tables import tables_marked

# A preformatted table as pypdf's layout mode renders it: a two-line header over right-aligned numbers.
MEMORY_LAYOUT = """\
Here is a table which summarises the maximum memory usage for different block sizes.
               Compress    Decompress    Decompress    Corpus
     Flag       usage         usage          -s usage       Size

      -1         1200k          500k             350k         914704
      -2         2000k          900k             600k         877703
      -5         4400k         2100k           1350k         845160
2.6. RECOVERING DATA FROM DAMAGED FILES"""
# The same page as plain extraction gives it: each line's words joined by single spaces.
MEMORY_PLAIN = "\n".join(" ".join(line.split()) for line in MEMORY_LAYOUT.splitlines() if line.strip())


def _pdf(build: object) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    build(pdf)  # type: ignore[operator]
    return bytes(pdf.output())


def _travel_table(pdf: FPDF, rows: int = 4) -> None:
    pdf.multi_cell(0, 6, "Allowances are paid per night away, by city.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    cities = [("London", "180", "GBP", "Line manager"), ("New York", "250", "USD", "Head of finance")]
    with pdf.table(col_widths=(50, 30, 30, 60), text_align="LEFT") as table:
        for cells in [("City", "Nightly limit", "Currency", "Approved by"), *(cities * rows)[:rows]]:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.ln(4)
    pdf.multi_cell(0, 6, "Claims above the limit need approval in writing.", new_x="LMARGIN", new_y="NEXT")


def test_a_header_of_two_lines_is_merged_column_by_column_over_its_rows() -> None:
    marked = tables_marked(MEMORY_PLAIN, MEMORY_LAYOUT)
    assert marked.split("\n") == [
        "Here is a table which summarises the maximum memory usage for different block sizes.",
        "",
        "| Flag | Compress usage | Decompress usage | Decompress -s usage | Corpus Size |",
        "| --- | --- | --- | --- | --- |",
        "| -1 | 1200k | 500k | 350k | 914704 |",
        "| -2 | 2000k | 900k | 600k | 877703 |",
        "| -5 | 4400k | 2100k | 1350k | 845160 |",
        "",
        "2.6. RECOVERING DATA FROM DAMAGED FILES",
    ]


def test_a_pdf_table_is_a_markdown_table_under_its_first_row_between_its_paragraphs() -> None:
    parsed = parse(_pdf(_travel_table), filename="travel.pdf")
    assert parsed.sections[0].text.split("\n") == [
        "Allowances are paid per night away, by city.",
        "",
        "| City | Nightly limit | Currency | Approved by |",
        "| --- | --- | --- | --- |",
        "| London | 180 | GBP | Line manager |",
        "| New York | 250 | USD | Head of finance |",
        "| London | 180 | GBP | Line manager |",
        "| New York | 250 | USD | Head of finance |",
        "",
        "Claims above the limit need approval in writing.",
    ]


def test_a_long_pdf_table_repeats_its_header_in_every_chunk() -> None:
    parsed = parse(_pdf(lambda pdf: _travel_table(pdf, rows=60)), filename="travel.pdf")
    chunks = chunk_document(parsed)
    inside = [chunk for chunk in chunks if "| London |" in chunk.text or "| New York |" in chunk.text]
    assert len(inside) >= 2
    for chunk in inside:
        assert "| City | Nightly limit | Currency | Approved by |\n| --- | --- | --- | --- |\n" in chunk.text


def test_justified_prose_two_columns_of_text_lists_and_code_are_not_tables() -> None:
    justified = "\n".join(
        [
            "The  committee  meets  every  month  and  reviews  each  request  it  has  been  sent.",
            "Requests   that  arrive  late  are  held  over   to  the  next  meeting  of  the  month.",
            "Members  may  ask  for   a  vote  by  post  when  the  matter  cannot  wait  that   long.",
        ]
    )
    columns = "\n".join(
        f"The left column of this page runs on {i}     while the right column says another thing {i}"
        for i in range(5)
    )
    bullets = "\n".join(f"  •     Item number {i} of the list" for i in range(4))
    code = "\n".join(f"   int       value_{i};" for i in range(4))
    for layout in (justified, columns, bullets, code):
        plain = "\n".join(" ".join(line.split()) for line in layout.splitlines())
        assert tables_marked(plain, layout) == plain


def test_a_table_the_plain_text_does_not_hold_in_one_run_is_left_as_it_was() -> None:
    plain = "\n".join(reversed(MEMORY_PLAIN.splitlines()))
    assert tables_marked(plain, MEMORY_LAYOUT) == plain
