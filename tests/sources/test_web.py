"""The web-site connector against a real HTTP server on 127.0.0.1: a site that changes between scans."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping

import pytest

from sources.connectors.base import ConnectorError, Found, SourceConfig
from sources.connectors.web import WebSiteConnector
from tests.sources.site_server import Page, Site, html, site_server


@pytest.fixture
def site() -> Iterator[Site]:
    with site_server() as served:
        yield served


def scan(site: Site, previous: Mapping[str, str] | None = None, **config: object) -> dict[str, Found]:
    location = str(config.pop("location", site.url + "/"))
    connector = WebSiteConnector(SourceConfig(location=location, **config))  # type: ignore[arg-type]
    found: dict[str, Found] = {}
    for item in connector.scan(previous=previous or {}):
        assert item.identity not in found, f"{item.identity} yielded twice"
        found[item.identity] = item
    return found


def versions(found: Mapping[str, Found]) -> dict[str, str]:
    return {identity: item.version for identity, item in found.items() if not item.error}


def small_site(site: Site) -> None:
    site.pages = {
        "/": Page(html("Home", links=("/a.html", "/b.html", "/notes.md", "#top", "mailto:x@example.org"))),
        "/a.html": Page(html("Page A", links=("/", "/b.html"))),
        "/b.html": Page(html("Page B", text="Version one of B.")),
        "/notes.md": Page(b"# Notes\n\nPlain notes.\n", content_type="text/markdown", etag=True),
    }


def test_first_scan_yields_every_page_with_its_content_title_and_file_name(site: Site) -> None:
    small_site(site)
    found = scan(site)
    assert set(found) == {f"{site.url}/", f"{site.url}/a.html", f"{site.url}/b.html", f"{site.url}/notes.md"}
    home = found[f"{site.url}/"]
    assert home.title == "Home" and home.filename == "index.html" and home.url == f"{site.url}/"
    assert home.content is not None and b"Home" in home.content
    assert found[f"{site.url}/notes.md"].filename == "notes.md"
    assert found[f"{site.url}/notes.md"].version.startswith("etag:")
    assert found[f"{site.url}/b.html"].version.startswith("sha256:")
    assert not any(item.error for item in found.values())


def test_second_scan_sends_only_what_changed_and_leaves_out_what_is_gone(site: Site) -> None:
    """Edited and new pages carry content; unchanged ones none; a removed page (now 404) is not yielded."""
    small_site(site)
    first = versions(scan(site))
    site.pages["/"] = Page(html("Home", links=("/a.html", "/b.html", "/notes.md", "/new.html")))
    site.pages["/b.html"] = Page(html("Page B", text="Version two of B."))
    site.pages["/new.html"] = Page(html("New page"))
    del site.pages["/a.html"]  # still linked from the home page: it answers 404
    site.requests.clear()

    second = scan(site, previous=first)

    assert set(second) == {
        f"{site.url}/",
        f"{site.url}/b.html",
        f"{site.url}/notes.md",
        f"{site.url}/new.html",
    }
    assert second[f"{site.url}/b.html"].content is not None
    assert second[f"{site.url}/new.html"].content is not None
    assert second[f"{site.url}/notes.md"].content is None
    assert second[f"{site.url}/notes.md"].version == first[f"{site.url}/notes.md"]
    # The Markdown file was asked for conditionally and cost a 304, not a download.
    (notes,) = site.requested("/notes.md")
    assert notes.headers.get("If-None-Match") and notes.status == 304
    assert not any(item.error for item in second.values())


def test_an_unchanged_html_page_is_fetched_for_its_links_but_not_sent_again(site: Site) -> None:
    small_site(site)
    first = versions(scan(site))
    second = scan(site, previous=first)
    assert all(item.content is None for item in second.values())
    assert versions(second) == first


def test_the_same_page_at_two_addresses_is_one_item(site: Site) -> None:
    small_site(site)
    site.pages["/index.html"] = site.pages["/"]
    site.pages["/a.html"] = Page(html("Page A", links=("/index.html",)))
    found = scan(site)
    assert f"{site.url}/" in found and f"{site.url}/index.html" not in found
    again = scan(site, previous=versions(found))
    assert set(again) == set(found)


def test_a_redirected_page_is_known_by_where_it_ends(site: Site) -> None:
    small_site(site)
    site.pages["/"] = Page(html("Home", links=("/old.html", "/b.html")))
    site.pages["/old.html"] = Page(status=301, headers={"Location": "/moved/new.html"})
    site.pages["/moved/new.html"] = Page(html("Moved"))
    site.pages["/away.html"] = Page(status=302, headers={"Location": "http://example.invalid/x"})
    site.pages["/"] = Page(html("Home", links=("/old.html", "/b.html", "/away.html", "/moved/new.html")))
    found = scan(site)
    assert f"{site.url}/moved/new.html" in found
    assert f"{site.url}/old.html" not in found
    assert not any("away" in identity or "invalid" in identity for identity in found)
    assert len(site.requested("/moved/new.html")) >= 1


def test_a_server_error_is_a_failed_item_that_keeps_its_document(site: Site) -> None:
    """A 500 keeps the page (failed, old version); pages only reachable through it are kept, not deleted."""
    site.pages = {
        "/": Page(html("Home", links=("/hub.html", "/gone.html"))),
        "/hub.html": Page(html("Hub", links=("/leaf.html",))),
        "/leaf.html": Page(html("Leaf")),
        "/gone.html": Page(html("Gone soon")),
    }
    first = versions(scan(site))
    assert len(first) == 4
    site.pages["/hub.html"] = Page(b"oops", status=500)
    del site.pages["/gone.html"]

    second = scan(site, previous=first)

    hub = second[f"{site.url}/hub.html"]
    assert "HTTP 500" in hub.error and hub.version == first[f"{site.url}/hub.html"]
    leaf = second[f"{site.url}/leaf.html"]
    assert "Not reached" in leaf.error and "hub.html" in leaf.error
    assert leaf.version == first[f"{site.url}/leaf.html"]
    # The page that answered 404 was reached: it is gone, not kept.
    assert f"{site.url}/gone.html" not in second

    site.pages["/hub.html"] = Page(html("Hub", links=("/leaf.html",)))
    third = scan(site, previous=first)
    assert not any(item.error for item in third.values())
    assert f"{site.url}/gone.html" not in third


def test_bad_pages_are_failed_items_with_a_reason_and_the_crawl_goes_on(site: Site) -> None:
    bad = ("/slow.html", "/binary.html", "/loop1.html", "/forbidden.html", "/badport.html")
    site.pages = {
        "/": Page(html("Home", links=(*bad, "/fine.html", "/missing.html", "/photo.png"))),
        "/fine.html": Page(html("Fine")),
        "/slow.html": Page(html("Slow"), delay_s=30),
        "/binary.html": Page(bytes(range(256)) * 64),
        "/loop1.html": Page(status=302, headers={"Location": "/loop2.html"}),
        "/loop2.html": Page(status=302, headers={"Location": "/loop1.html"}),
        "/forbidden.html": Page(b"no", status=403),
        "/badport.html": Page(status=301, headers={"Location": "http://127.0.0.1:99999/x"}),
        "/photo.png": Page(b"\x89PNG\r\n\x1a\n" + bytes(100), content_type="image/png"),
    }
    found = scan(site, options={"timeout_s": 0.5})
    assert found[f"{site.url}/fine.html"].content is not None
    errors = {identity.removeprefix(site.url): item.error for identity, item in found.items() if item.error}
    assert set(errors) == set(bad)
    assert "no answer within 0.5 s" in errors["/slow.html"]
    assert "binary, not text" in errors["/binary.html"]
    assert "redirects in a loop" in errors["/loop1.html"]
    assert "HTTP 403" in errors["/forbidden.html"]
    assert "malformed" in errors["/badport.html"]
    assert f"{site.url}/missing.html" not in found and f"{site.url}/photo.png" not in found


def test_robots_txt_is_obeyed(site: Site) -> None:
    small_site(site)
    site.pages["/"] = Page(html("Home", links=("/a.html", "/private/secret.html")))
    site.pages["/private/secret.html"] = Page(html("Secret"))
    site.pages["/robots.txt"] = Page(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    found = scan(site)
    assert f"{site.url}/a.html" in found
    assert not site.requested("/private/secret.html")
    assert f"{site.url}/private/secret.html" not in found


def test_robots_txt_that_forbids_the_start_page_fails_the_scan(site: Site) -> None:
    small_site(site)
    site.pages["/robots.txt"] = Page(b"User-agent: ragsite\nDisallow: /\n", content_type="text/plain")
    with pytest.raises(ConnectorError, match="robots.txt does not allow"):
        scan(site)


def test_only_same_site_links_under_the_start_path_are_followed(site: Site) -> None:
    site.pages = {
        "/docs/": Page(
            html("Docs", links=("guide.html", "/blog/post.html", "http://example.invalid/x", "sub/"))
        ),
        "/docs/guide.html": Page(html("Guide")),
        "/docs/sub/": Page(html("Sub")),
        "/blog/post.html": Page(html("Post")),
    }
    found = scan(site, location=f"{site.url}/docs/")
    assert set(found) == {f"{site.url}/docs/", f"{site.url}/docs/guide.html", f"{site.url}/docs/sub/"}
    assert not site.requested("/blog/post.html")


def test_patterns_choose_the_pages(site: Site) -> None:
    site.pages = {
        "/": Page(html("Home", links=("/drafts/", "/guide.html", "/notes.md"))),
        "/drafts/": Page(html("Drafts", links=("/drafts/one.html",))),
        "/drafts/one.html": Page(html("Draft one")),
        "/guide.html": Page(html("Guide")),
        "/notes.md": Page(b"# Notes\n", content_type="text/markdown"),
    }
    found = scan(site, include=("*.html", "*/"), exclude=("drafts/*",))
    assert set(found) == {f"{site.url}/", f"{site.url}/guide.html"}
    assert not site.requested("/drafts/one.html")


def test_depth_limit(site: Site) -> None:
    site.pages = {
        "/": Page(html("Home", links=("/1.html",))),
        "/1.html": Page(html("One", links=("/2.html",))),
        "/2.html": Page(html("Two")),
    }
    assert set(scan(site, options={"max_depth": 1})) == {f"{site.url}/", f"{site.url}/1.html"}


def test_a_ten_thousand_page_site_stops_at_the_page_limit_with_a_note(site: Site) -> None:
    def generated(path: str) -> Page | None:
        if path == "/":
            return Page(html("Big site", links=tuple(f"/p{n}.html" for n in range(10_000))))
        if path.startswith("/p") and path.endswith(".html") and path[2:-5].isdigit():
            return Page(html(f"Page {path[2:-5]}"))
        return None

    site.generator = generated
    connector = WebSiteConnector(SourceConfig(location=site.url + "/", options={"max_pages": 60}))
    found = list(connector.scan(previous={}))
    assert len(found) == 60 and not any(item.error for item in found)
    assert len(site.gets()) <= 61  # robots.txt, then the pages
    assert any("max_pages=60" in note for note in connector.notes)
    # The same pages the next time: the limit takes them in link order, however the requests overlap.
    again = list(
        WebSiteConnector(SourceConfig(location=site.url + "/", options={"max_pages": 60})).scan(previous={})
    )
    assert [item.identity for item in again] == [item.identity for item in found]


def test_requests_to_the_site_are_limited_to_the_concurrency(site: Site) -> None:
    site.pages = {"/": Page(html("Home", links=tuple(f"/p{n}.html" for n in range(40))))}
    for n in range(40):
        site.pages[f"/p{n}.html"] = Page(html(f"Page {n}"), delay_s=0.05)
    found = scan(site, options={"concurrency": 3})
    assert len(found) == 41
    assert site.most_in_flight <= 3


def test_a_sitemap_lists_the_pages_and_unchanged_ones_cost_a_304(site: Site) -> None:
    sitemap = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{site.url}/a.html</loc><lastmod>2026-01-01</lastmod></url>"
        f"<url><loc>{site.url}/b.html</loc></url>"
        "<url><loc>http://example.invalid/elsewhere.html</loc></url>"
        "</urlset>"
    )
    site.pages = {
        "/sitemap.xml": Page(sitemap.encode(), content_type="application/xml"),
        "/a.html": Page(html("A", links=("/unlisted.html",)), etag=True),
        "/b.html": Page(html("B"), etag=True),
        "/unlisted.html": Page(html("Not in the sitemap")),
    }
    first = scan(site, location=f"{site.url}/sitemap.xml")
    assert set(first) == {f"{site.url}/a.html", f"{site.url}/b.html"}
    assert all(item.version.startswith("etag:") and item.content for item in first.values())

    site.pages["/b.html"] = Page(html("B", text="B, edited."), etag=True)
    site.requests.clear()
    second = scan(site, previous=versions(first), location=f"{site.url}/sitemap.xml")
    assert second[f"{site.url}/a.html"].content is None
    assert second[f"{site.url}/b.html"].content is not None
    assert [request.status for request in site.requested("/a.html")] == [304]

    # A failed page hides nothing in sitemap mode: a page the sitemap no longer lists is gone.
    without_b = sitemap.replace(f"<url><loc>{site.url}/b.html</loc></url>", "")
    site.pages["/sitemap.xml"] = Page(without_b.encode(), content_type="application/xml")
    site.pages["/a.html"] = Page(b"down", status=500)
    third = scan(site, previous=versions(second), location=f"{site.url}/sitemap.xml")
    assert set(third) == {f"{site.url}/a.html"} and "HTTP 500" in third[f"{site.url}/a.html"].error


def test_a_sitemap_index_names_sitemaps(site: Site) -> None:
    site.pages = {
        "/sitemap.xml": Page(
            (
                '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<sitemap><loc>{site.url}/pages.xml</loc></sitemap></sitemapindex>"
            ).encode(),
            content_type="text/xml",
        ),
        "/pages.xml": Page(
            (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{site.url}/a.html</loc></url></urlset>"
            ).encode(),
            content_type="application/xml",
        ),
        "/a.html": Page(html("A")),
    }
    assert set(scan(site, location=f"{site.url}/sitemap.xml")) == {f"{site.url}/a.html"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_site_that_cannot_be_reached_fails_the_scan_with_a_readable_message() -> None:
    connector = WebSiteConnector(SourceConfig(location=f"http://127.0.0.1:{_closed_port()}/"))
    with pytest.raises(ConnectorError, match="cannot be reached"):
        list(connector.scan(previous={}))


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ({"/": Page(status=302, headers={"Location": "/"})}, "redirects in a loop"),
        ({"/": Page(b"down", status=503)}, "HTTP 503"),
        ({}, "is not a page of the site"),
        ({"/": Page(bytes(range(256)) * 64)}, "binary, not text"),
        ({"/robots.txt": Page(b"", status=500)}, "robots.txt answered HTTP 500"),
    ],
)
def test_a_start_page_that_cannot_be_read_fails_the_scan(
    site: Site, pages: dict[str, Page], message: str
) -> None:
    site.pages = pages
    with pytest.raises(ConnectorError, match=message):
        scan(site)


def test_a_location_that_is_no_web_address_fails_the_scan() -> None:
    with pytest.raises(ConnectorError, match="not a web address"):
        list(WebSiteConnector(SourceConfig(location="ftp://example.org/")).scan(previous={}))
    with pytest.raises(ConnectorError, match="max_pages"):
        list(
            WebSiteConnector(SourceConfig(location="http://x/", options={"max_pages": "lots"})).scan(
                previous={}
            )
        )
