"""medmae's imports point down the stages and form no cycle (every import counts, including
those inside functions: an in-function import hides a cycle, it does not remove it).

The stages, lowest first (a module may import its own stage and any lower one):

    base (atomic, device, interrupts, pidlock, source_graph, tokens, config) -> tracking -> io ->
    preprocess, synth -> data -> masking -> models -> training -> export ->
    heads -> studies -> demo, cli

``tracking`` (MLflow, the metrics log, figures) imports no stage: it is a service that
training and everything above it use. ``synth`` (phantoms) writes scans as io does.
"""

from __future__ import annotations

import pytest

from medmae.source_graph import import_graph

ORDER = [("atomic", "device", "interrupts", "pidlock", "source_graph", "tokens", "config"), ("tracking",), ("io",),
         ("preprocess", "synth"), ("data",), ("masking",), ("models",), ("training",), ("export",),
         ("heads",), ("studies",), ("demo", "cli", "__main__")]
RANK = {name: i for i, names in enumerate(ORDER) for name in names}


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the medmae package itself


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def upward(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            a, b = stage(m), stage(t)
            if a is None or b is None:
                continue
            if a not in RANK or b not in RANK:
                bad.append(f"{m} -> {t}: stage not placed in tests/test_layers.py ORDER")
            elif RANK[b] > RANK[a]:
                bad.append(f"{m} ({a}) imports {t} ({b}), a higher stage")
    return bad


GRAPH = import_graph()


def test_the_walker_sees_in_function_imports():
    assert "medmae.export.pretrained" in GRAPH["medmae.studies.kinds"]  # imported inside run_* functions
    assert "medmae.io.read" in GRAPH["medmae.io.scan"]
    assert len(GRAPH) > 150


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_no_upward_import():
    assert upward(GRAPH) == []


@pytest.mark.parametrize("extra, finds", [
    ({"medmae.io.read": {"medmae.io.scan"}}, "cycle"),  # read <-> scan, as the io cycles were
    ({"medmae.preprocess.case": {"medmae.data.loader"}}, "upward"),
    ({"medmae.tracking.figures": {"medmae.training.correlation"}}, "upward"),
])
def test_the_checks_fail_on_a_planted_fault(extra, finds):
    graph = {m: set(t) for m, t in GRAPH.items()}
    for m, targets in extra.items():
        graph[m] |= targets
    if finds == "cycle":
        assert any(set(extra) <= set(c) for c in cycles(graph))
    else:
        assert upward(graph) and upward(GRAPH) == []
