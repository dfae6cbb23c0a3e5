"""The connector registry: a source's kind names the class that reads it.

Adding a kind (Confluence, SharePoint Graph, Google Drive) is one module with one class implementing
`base.Connector`, and one line here; docs/sources.md says how.
"""

from __future__ import annotations

from .base import Connector, ConnectorError, Found, SourceConfig
from .git import GitConnector
from .web import WebSiteConnector
from .webdav import WebDavConnector

CONNECTORS: dict[str, type[Connector]] = {
    GitConnector.kind: GitConnector,
    WebSiteConnector.kind: WebSiteConnector,
    WebDavConnector.kind: WebDavConnector,
}

LABELS: dict[str, str] = {
    GitConnector.kind: "Git repository",
    WebSiteConnector.kind: "Web site",
    WebDavConnector.kind: "WebDAV folder",
}


def connector_choices() -> list[tuple[str, str]]:
    """The kinds a source may have, for the model's field and the forms."""
    return [(kind, LABELS.get(kind, kind)) for kind in sorted(CONNECTORS)]


def connector_for(kind: str, config: SourceConfig) -> Connector:
    """A connector of `kind` for `config`; ConnectorError if no such kind is installed."""
    try:
        connector_class = CONNECTORS[kind]
    except KeyError:
        raise ConnectorError(
            f"No connector for sources of kind “{kind}” is installed; choose one of: "
            f"{', '.join(sorted(CONNECTORS))}."
        ) from None
    return connector_class(config)


__all__ = ["CONNECTORS", "Connector", "ConnectorError", "Found", "SourceConfig", "connector_for"]
