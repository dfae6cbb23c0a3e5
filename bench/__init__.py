"""Benchmarks, each run as a script (`python bench/NAME.py`); a package only so that type checkers tell
bench/ingest.py from the ingest app."""
