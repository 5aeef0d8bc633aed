"""FFmpeg filter graphs for the worker's video and audio paths."""

from __future__ import annotations

import itertools

import av


def configure_chain(graph: av.filter.Graph, *nodes: av.filter.FilterContext) -> av.filter.Graph:
    """Link ``nodes`` of ``graph`` one after the other and configure it; returns it."""
    for upstream, downstream in itertools.pairwise(nodes):
        upstream.link_to(downstream)
    graph.configure()
    return graph
