"""The fake Graph's fixtures for these tests (tests/support/fakegraph.py)."""

from tests.support.fakegraph import connected, fake_graph, graph_route, rt  # noqa: F401 - fixtures
