"""No import cycle inside `supervisor`, even with `TYPE_CHECKING` imports counted.

The layer contract (`lint-imports`) keeps layers importing downward, but it cannot see a loop
between two modules of one layer (core's server and cache front once called each other). This
test reads the same import graph import-linter builds (grimp, its graph library) and fails on any
strongly connected group of modules, naming a chain through it.
"""

from __future__ import annotations

import grimp


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every group of modules that import each other, in a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    groups.append(sorted(group))
    return groups


def test_strongly_connected_finds_a_loop_and_nothing_else() -> None:
    """The detector itself can fail: a three-module loop is found, a chain beside it is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycle_inside_supervisor() -> None:
    built = grimp.build_graph("supervisor", cache_dir=None)  # TYPE_CHECKING imports included
    graph = {module: built.find_modules_directly_imported_by(module) for module in built.modules}
    cycles = strongly_connected(graph)
    shown = []
    for group in cycles:
        chain = built.find_shortest_chain(group[0], group[1]) or ()
        back = built.find_shortest_chain(group[1], group[0]) or ()
        shown.append(f"{', '.join(group)} (e.g. {' -> '.join(chain)} -> {' -> '.join(back[1:])})")
    assert not cycles, "import cycles:\n" + "\n".join(shown)
