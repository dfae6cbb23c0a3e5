"""Rows of cells as Markdown tables: escaped, padded, and only when they are tabular data."""

from __future__ import annotations

import pytest

from ingest.parsers.tables import markdown_table, rows_as_lines, table_header


def test_cells_are_escaped_ragged_rows_padded_and_empty_columns_dropped() -> None:
    rows = [["Name", "", "Role"], ["Ada | Lovelace", "", "analyst\nand writer"], ["Grace"]]
    assert markdown_table(rows) == (
        "| Name | Role |\n| --- | --- |\n| Ada \\| Lovelace | analyst and writer |\n| Grace |  |"
    )


@pytest.mark.parametrize(
    "rows",
    [
        [["only one column"], ["still one"]],
        [["Header", "without rows"]],
        [["", ""], ["", ""]],
        [],
    ],
)
def test_rows_that_are_not_tabular_data_are_not_a_table(rows: list[list[str]]) -> None:
    assert markdown_table(rows) is None


def test_rows_that_are_not_a_table_read_as_lines_of_their_cells() -> None:
    assert rows_as_lines([["A note", "A note"], ["", ""], ["x", " y  z "]]) == ["A note", "x | y z"]


def test_the_header_of_a_table_paragraph_is_its_first_row_and_separator() -> None:
    assert table_header("| a | b |\n| --- | :---: |\n| 1 | 2 |") == "| a | b |\n| --- | :---: |"
    assert table_header("| a | b |\n| 1 | 2 |") is None
    assert table_header("Not a table.\n| --- |") is None
    assert table_header("|  |  |\n| --- | --- |\n| 1 | 2 |") is None  # an empty header: nothing to repeat


def test_rows_whose_source_marks_no_header_go_under_an_empty_one() -> None:
    assert markdown_table([["query", "dump inputs"], ["graph", "output a graph"]], has_header=False) == (
        "|  |  |\n| --- | --- |\n| query | dump inputs |\n| graph | output a graph |"
    )
    assert markdown_table([["only one row", "of data"]], has_header=False) is None
