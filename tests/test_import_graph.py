"""The project's packages import each other one way: collapsed to packages, the import graph has no cycle.

import-linter (`make lint`, pyproject.toml) keeps the stated order of the layers; this keeps the weaker
property that holds whatever the order, for every package, a new one included: no two packages depend on each
other, directly or through others. Imports inside functions count: they are dependencies all the same.
"""

from __future__ import annotations

import graphlib
import itertools
from collections import defaultdict
from pathlib import Path

import grimp
from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
# Every top-level package but the tests and the benchmarks, which import the project and are imported by none
# of it.
PACKAGES = sorted(
    path.parent.name for path in ROOT.glob("*/__init__.py") if path.parent.name not in {"tests", "bench"}
)
# ragsite is two nodes. Its ASGI app, URLconf and status page wire the apps together, so they import them;
# its infrastructure (settings, the Celery app, the devstack, health checks) imports no app. The apps may not
# import ragsite at all today (an import-linter contract), but an app that imported, say, the Celery app would
# depend on the infrastructure, not on the wiring above it: as one node, that would read as a cycle.
RAGSITE_WIRING = ("ragsite.asgi", "ragsite.urls", "ragsite.status")


def _node(module: str) -> str:
    """The package a module counts for: its top-level package, or one of ragsite's two halves."""
    package = module.split(".")[0]
    if package == "ragsite" and not any(
        module == top or module.startswith(f"{top}.") for top in RAGSITE_WIRING
    ):
        return "ragsite (infrastructure)"
    return package


def _package_imports() -> dict[tuple[str, str], list[str]]:
    """Each (importer, imported) pair of distinct packages, with the module imports that make it."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if _node(importer) != _node(imported):
                edges[_node(importer), _node(imported)].append(f"{importer} -> {imported}")
    return edges


def test_the_graph_covers_every_app_of_the_project() -> None:
    """Every installed app whose code is in this repository, and the project package, is a node."""
    local_apps = {
        config.name.split(".")[0] for config in apps.get_app_configs() if (ROOT / config.name).is_dir()
    }
    assert {"ingest", "search", "retrievers"} <= local_apps  # the apps were found at all
    assert local_apps | {"ragsite"} <= set(PACKAGES)


def test_no_two_packages_import_each_other() -> None:
    edges = _package_imports()
    mutual = [
        f"{a} <-> {b}: {edges[a, b][0]} and {edges[b, a][0]}"
        for a, b in sorted(edges)
        if a < b and (b, a) in edges
    ]
    assert not mutual, "packages that import each other:\n" + "\n".join(mutual)


def test_the_package_graph_has_no_cycle() -> None:
    """A topological order of the packages exists: no chain of imports leads from a package back to itself."""
    edges = _package_imports()
    imports: dict[str, set[str]] = defaultdict(set)
    for importer, imported in edges:
        imports[importer].add(imported)
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]
        # CycleError lists the cycle so that each node is a predecessor of the next: the next one imports it.
        steps = [
            f"{imported} <- {importer}: {edges[importer, imported][0]}"
            for imported, importer in itertools.pairwise(cycle)
        ]
        raise AssertionError("the packages import each other in a cycle:\n" + "\n".join(steps)) from None
