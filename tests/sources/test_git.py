"""The git connector against local repositories made by the test: no Django, no database."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

import pytest

from sources.connectors import ConnectorError, Found, SourceConfig
from sources.connectors.git import GitConnector
from tests.sources.conftest import Repository
from tests.sources.git_http import git_http_server

DOCS: dict[str, bytes | str] = {
    "README.md": "# Project\n\nThe project keeps its docs here.\n",
    "docs/guide.rst": "Guide\n=====\n\nInstall it with make.\n",
    "docs/manual.adoc": "= Manual\n\n== Start\n\nPress the green button.\n",
    "docs/page.html": "<html><head><title>Page</title></head><body><p>Hello.</p></body></html>",
    "notes.txt": "Plain notes.\n",
    "src/main.py": "print('not a document')\n",
    "logo.png": b"\x89PNG\r\n\x1a\n",
}


def scan(config: SourceConfig, previous: Mapping[str, str] | None = None) -> dict[str, Found]:
    return {found.identity: found for found in GitConnector(config).scan(previous=previous or {})}


def config(repository: Repository, tmp_path: Path, **kwargs: object) -> SourceConfig:
    values: dict[str, object] = {"location": str(repository.path), "cache_dir": str(tmp_path / "cache")}
    values.update(kwargs)
    return SourceConfig(**values)  # type: ignore[arg-type]


def test_a_first_scan_yields_every_document_file_with_its_blob_id_and_content(
    repository: Repository, tmp_path: Path
) -> None:
    repository.commit("docs", DOCS)
    found = scan(config(repository, tmp_path))
    assert sorted(found) == ["README.md", "docs/guide.rst", "docs/manual.adoc", "docs/page.html", "notes.txt"]
    guide = found["docs/guide.rst"]
    assert (guide.version, guide.filename, guide.content, guide.error) == (
        repository.blob("docs/guide.rst"),
        "guide.rst",
        b"Guide\n=====\n\nInstall it with make.\n",
        "",
    )


def test_a_scan_after_new_commits_reads_only_the_changed_blobs(
    repository: Repository, tmp_path: Path
) -> None:
    repository.commit("docs", DOCS)
    first = scan(config(repository, tmp_path))
    previous = {identity: found.version for identity, found in first.items()}
    repository.commit(
        "edit one, add one, remove one",
        {"notes.txt": "Edited notes.\n", "docs/new.md": "# New\n\nNew page.\n"},
        remove=("docs/page.html",),
    )

    second = scan(config(repository, tmp_path), previous)

    read = {identity for identity, found in second.items() if found.content is not None}
    assert read == {"notes.txt", "docs/new.md"}
    assert second["notes.txt"].content == b"Edited notes.\n"
    assert "docs/page.html" not in second
    assert second["README.md"].version == previous["README.md"]


def test_include_and_exclude_patterns_choose_files_by_path(repository: Repository, tmp_path: Path) -> None:
    repository.commit("docs", DOCS)
    found = scan(config(repository, tmp_path, include=("docs/*",), exclude=("*.html",)))
    assert sorted(found) == ["docs/guide.rst", "docs/manual.adoc"]


def test_one_branch_is_read_and_a_missing_branch_is_a_clear_error(
    repository: Repository, tmp_path: Path
) -> None:
    repository.commit("main", {"main.md": "# Main\n\nOn main.\n"})
    repository.git("checkout", "--quiet", "-b", "release")
    repository.commit("release", {"release.md": "# Release\n\nOn release.\n"})
    repository.git("checkout", "--quiet", "main")

    assert sorted(scan(config(repository, tmp_path, options={"branch": "release"}))) == [
        "main.md",
        "release.md",
    ]
    assert sorted(scan(config(repository, tmp_path))) == ["main.md"]  # the remote's HEAD
    with pytest.raises(ConnectorError, match="The branch “nope” does not exist in"):
        scan(config(repository, tmp_path, options={"branch": "nope"}))


def test_a_file_over_the_size_limit_is_a_failed_item_read_from_its_listed_size(
    repository: Repository, tmp_path: Path
) -> None:
    # A sparse 1 GB file: git stores it compressed; ls-tree -l still lists its full size.
    big = repository.path / "big.txt"
    with big.open("wb") as handle:
        handle.truncate(2**30)
    repository.commit("big", {"small.md": "# Small\n\nFine.\n"})

    found = scan(config(repository, tmp_path, max_item_bytes=50 * 2**20))

    assert found["big.txt"].content is None
    assert found["big.txt"].error == (
        "big.txt is 1.0 GB; the limit for one document is 50.0 MB. Split the file, or exclude it with an "
        "exclude pattern."
    )
    assert found["small.md"].content == b"# Small\n\nFine.\n"


def test_a_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    missing = SourceConfig(location=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(
        ConnectorError, match=r"is not a git repository that the workers can read .* Check the location"
    ):
        scan(missing)


@pytest.mark.parametrize("location", ["--upload-pack=touch /tmp/pwned", "ext::sh -c touch% /tmp/pwned", ""])
def test_a_location_that_is_no_repository_address_is_refused_before_git_runs(
    location: str, tmp_path: Path
) -> None:
    with pytest.raises(ConnectorError, match="is not a repository location"):
        scan(SourceConfig(location=location, cache_dir=str(tmp_path / "cache")))


def test_an_empty_file_is_a_failed_item(repository: Repository, tmp_path: Path) -> None:
    repository.commit("empty", {"empty.md": "", "full.md": "# Full\n\nText.\n"})
    found = scan(config(repository, tmp_path))
    assert found["empty.md"].error == "empty.md is empty."
    assert found["full.md"].content == b"# Full\n\nText.\n"


def test_an_https_style_repository_is_read_with_its_credentials_and_refused_without_them(
    repository: Repository, tmp_path: Path
) -> None:
    repository.commit("docs", {"guide.md": "# Guide\n\nBehind a password.\n"})
    with git_http_server(repository.path.parent, username="reader", password="s3cret") as base:
        location = f"{base}/{repository.path.name}"
        good = SourceConfig(
            location=location,
            credentials={"username": "reader", "password": "s3cret"},
            cache_dir=str(tmp_path / "cache"),
        )
        assert scan(good)["guide.md"].content == b"# Guide\n\nBehind a password.\n"

        for credentials in ({"username": "reader", "password": "wrong"}, {}):
            refused = SourceConfig(location=location, credentials=credentials, cache_dir=str(tmp_path / "c2"))
            with pytest.raises(
                ConnectorError, match=r"refused the credentials .* Check the source's user name"
            ):
                scan(refused)


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    from ragsite.devstack import free_port

    location = f"http://127.0.0.1:{free_port()}/repo"
    with pytest.raises(ConnectorError, match="cannot be reached from the workers"):
        scan(SourceConfig(location=location, cache_dir=str(tmp_path / "cache")))


def test_a_server_that_never_answers_fails_the_scan_at_the_timeout(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) and never answers
    try:
        location = f"http://127.0.0.1:{silent.getsockname()[1]}/repo"
        config = SourceConfig(location=location, options={"timeout_s": 2}, cache_dir=str(tmp_path / "cache"))
        with pytest.raises(ConnectorError, match=r"git fetch did not finish within 2 s\. Check that"):
            scan(config)
    finally:
        silent.close()
