"""Flows and output references (mcoflow.engine.flow): compact JSON, ordering, graphs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcoflow.engine.flow import (
    REF_KEY,
    FlowNode,
    OutputReference,
    StepGraph,
    UnresolvedReference,
    build_graph,
    check_acyclic,
    contains_reference,
    encode_references,
    flow_steps,
    ordered,
    ordering_edges,
    referenced_steps,
    resolve_references,
)

# ---- FlowNode.to_json: the compact stored form ------------------------------------------


def S(*children: FlowNode | int) -> FlowNode:
    return FlowNode("S", list(children))


def C(*children: FlowNode | int) -> FlowNode:
    return FlowNode("C", list(children))


def test_empty_node_encodes_to_none() -> None:
    assert S().to_json() is None
    assert C(S(), C()).to_json() is None


def test_single_child_is_unwrapped_through_any_depth() -> None:
    assert S(5).to_json() == 5
    assert C(S(C(S(3)))).to_json() == 3
    assert C(S(1, 2)).to_json() == ["S", 1, 2]


def test_sequence_of_steps_and_concurrence_of_steps() -> None:
    assert S(1, 2, 3).to_json() == ["S", 1, 2, 3]
    assert C(1, 2, 3).to_json() == ["C", 1, 2, 3]


def test_concurrence_inside_sequence_is_kept() -> None:
    assert S(C(1, 2), 3).to_json() == ["S", ["C", 1, 2], 3]
    assert C(S(1, 2), S(3, 4)).to_json() == ["C", ["S", 1, 2], ["S", 3, 4]]


def test_same_kind_nested_in_same_kind_is_flattened() -> None:
    assert S(1, S(2, 3), 4).to_json() == ["S", 1, 2, 3, 4]
    assert C(1, C(2, C(3, 4))).to_json() == ["C", 1, 2, 3, 4]
    # flattening happens after single-child unwrapping: S(C(S(1, 2))) is a sequence
    assert S(0, C(S(1, 2)), 3).to_json() == ["S", 0, 1, 2, 3]


def test_empty_children_disappear_without_changing_the_shape() -> None:
    assert S(C(), 1, S(), 2, C(S())).to_json() == ["S", 1, 2]
    assert S(C(), C(1, C()), 2).to_json() == ["S", 1, 2]


def test_deep_mixed_nesting_keeps_alternating_kinds() -> None:
    node = S(C(S(1, 2), 3), 4, C(5, S(6, C(7, 8))))
    assert node.to_json() == ["S", ["C", ["S", 1, 2], 3], 4, ["C", 5, ["S", 6, ["C", 7, 8]]]]
    assert list(flow_steps(node.to_json())) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_flow_steps_of_none_and_single_step() -> None:
    assert list(flow_steps(None)) == []
    assert list(flow_steps(7)) == [7]


# ---- ordering_edges: what must finish before each step, from the flow alone --------------


def test_ordering_edges_of_no_flow_and_single_step() -> None:
    assert ordering_edges(None) == {}
    assert ordering_edges(7) == {7: set()}


def test_ordering_edges_of_a_sequence_chain_each_step_to_the_previous() -> None:
    assert ordering_edges(["S", 1, 2, 3]) == {1: set(), 2: {1}, 3: {2}}


def test_ordering_edges_of_a_concurrence_are_empty() -> None:
    assert ordering_edges(["C", 1, 2, 3]) == {1: set(), 2: set(), 3: set()}


def test_step_after_a_concurrence_waits_for_all_its_branches() -> None:
    assert ordering_edges(["S", ["C", 1, 2], 3]) == {1: set(), 2: set(), 3: {1, 2}}


def test_concurrence_after_a_step_all_branches_wait_for_it() -> None:
    assert ordering_edges(["S", 1, ["C", 2, 3], 4]) == {
        1: set(),
        2: {1},
        3: {1},
        4: {2, 3},
    }


def test_nested_sequences_in_a_concurrence_wait_for_their_entry_and_join_on_exits() -> None:
    flow = ["S", 1, ["C", 2, ["S", 3, 4]], 5]
    assert ordering_edges(flow) == {1: set(), 2: {1}, 3: {1}, 4: {3}, 5: {2, 4}}
    assert ordering_edges(["C", ["S", 1, 2], ["S", 3, 4]]) == {
        1: set(),
        2: {1},
        3: set(),
        4: {3},
    }


# an independent oracle: a precedes b iff their lowest common block is a sequence in
# which a's branch comes first. The transitive closure of ordering_edges must equal it.

flows = st.recursive(
    st.just(0),
    lambda inner: st.tuples(st.sampled_from("SC"), st.lists(inner, min_size=2, max_size=4)),
    max_leaves=14,
)


def _number(tree: Any, counter: list[int]) -> Any:
    if tree == 0:
        counter[0] += 1
        return counter[0]
    kind, children = tree
    return [kind, *(_number(c, counter) for c in children)]


def _precedes(flow: Any) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    if isinstance(flow, int):
        return pairs
    kind, children = flow[0], flow[1:]
    for child in children:
        pairs |= _precedes(child)
    if kind == "S":
        for i, early in enumerate(children):
            for late in children[i + 1 :]:
                pairs |= {(a, b) for a in flow_steps(early) for b in flow_steps(late)}
    return pairs


def _closure(edges: dict[int, set[int]]) -> set[tuple[int, int]]:
    before: dict[int, set[int]] = {}

    def all_before(step: int) -> set[int]:
        if step not in before:
            found: set[int] = set()
            for p in edges[step]:
                found |= {p} | all_before(p)
            before[step] = found
        return before[step]

    return {(a, b) for b in edges for a in all_before(b)}


@given(flows)
def test_ordering_edges_transitively_equal_the_sequence_order_of_any_flow(tree: Any) -> None:
    flow = _number(tree, [0])
    edges = ordering_edges(flow)
    assert set(edges) == set(flow_steps(flow))
    assert _closure(edges) == _precedes(flow)


# ---- OutputReference and encoding ---------------------------------------------------------


def test_output_reference_item_paths_build_up_and_encode() -> None:
    whole = OutputReference(3)
    deep = whole["items"][0]["name"]
    assert whole.to_json() == {REF_KEY: [3]}
    assert deep == OutputReference(3, ("items", 0, "name"))
    assert deep.to_json() == {"$ref": [3, "items", 0, "name"]}
    assert whole.path == ()  # indexing does not mutate the original
    assert repr(deep) == "<output of step 3['items'][0]['name']>"


def test_encode_references_replaces_references_anywhere_and_lists_tuples() -> None:
    ref = OutputReference(2, ("sum",))
    encoded = encode_references(
        {"a": ref, "b": [1, (ref, {"c": OutputReference(4)})], "d": "text", "e": None}
    )
    assert encoded == {
        "a": {"$ref": [2, "sum"]},
        "b": [1, [{"$ref": [2, "sum"]}, {"c": {"$ref": [4]}}]],
        "d": "text",
        "e": None,
    }
    assert json.loads(json.dumps(encoded)) == encoded
    # already encoded references pass through unchanged
    assert encode_references(encoded) == encoded


def test_referenced_steps_finds_every_producer_once() -> None:
    value = {
        "x": {"$ref": [2, "k"]},
        "y": [{"$ref": [5]}, {"deep": [{"$ref": [2]}]}],
        "z": {"$ref": [7], "other": 1},  # not a reference: an ordinary dict
    }
    assert referenced_steps(value) == {2, 5}
    assert referenced_steps(None) == set()
    assert referenced_steps({"a": 1, "b": [1, 2]}) == set()


def test_contains_reference_on_objects_and_encoded_form() -> None:
    assert contains_reference(OutputReference(1))
    assert contains_reference({"a": [1, {"b": OutputReference(1)}]})
    assert contains_reference({"a": ({"$ref": [1]},)})
    assert not contains_reference({"a": {"$ref": [1], "b": 2}, "c": [1, "x"]})


def test_resolve_references_replaces_refs_by_values_along_their_paths() -> None:
    outputs = {2: {"sum": 6, "items": [{"name": "vim"}, {"name": "emacs"}]}, 3: {"ok": True}}
    value = {
        "a": {"$ref": [2, "sum"]},
        "b": [{"$ref": [2, "items", 1, "name"]}, "plain"],
        "c": {"$ref": [3]},
        "d": {"nested": {"$ref": [2, "items", 0]}},
    }
    assert resolve_references(value, outputs) == {
        "a": 6,
        "b": ["emacs", "plain"],
        "c": {"ok": True},
        "d": {"nested": {"name": "vim"}},
    }


def test_resolve_references_survives_a_json_round_trip_of_input_and_outputs() -> None:
    ref = OutputReference(2)["items"][1]
    stored_input = json.loads(json.dumps(encode_references({"v": ref})))
    stored_outputs = {2: json.loads(json.dumps({"items": [10, 20]}))}
    assert resolve_references(stored_input, stored_outputs) == {"v": 20}


def test_resolve_references_of_a_missing_key_names_the_step_and_path() -> None:
    with pytest.raises(UnresolvedReference, match=r"output of step 2 has no items/5"):
        resolve_references({"$ref": [2, "items", 5]}, {2: {"items": [1]}})
    with pytest.raises(UnresolvedReference, match="output of step 2 has no nope"):
        resolve_references({"a": {"$ref": [2, "nope"]}}, {2: {"sum": 1}})


def test_skipped_producer_resolves_to_none_with_or_without_a_path() -> None:
    # a skipped producer has no output: absent from outputs, or stored as None
    value = {
        "whole": {"$ref": [4]},
        "part": {"$ref": [4, "changed"]},
        "deep": {"$ref": [5, "a", 0]},
    }
    assert resolve_references(value, {}) == {"whole": None, "part": None, "deep": None}
    assert resolve_references(value, {4: None, 5: None}) == {
        "whole": None,
        "part": None,
        "deep": None,
    }


def test_resolve_references_leaves_values_without_references_alone() -> None:
    value = {"a": [1, {"b": "c"}], "d": None}
    assert resolve_references(value, {1: {"x": 1}}) == value


def test_resolve_does_not_reinterpret_a_producer_output_that_looks_like_a_reference() -> None:
    outputs = {1: {"raw": {"$ref": [9]}}}
    assert resolve_references({"$ref": [1, "raw"]}, outputs) == {"$ref": [9]}


# ---- build_graph and check_acyclic ----------------------------------------------------------


def test_build_graph_without_references_follows_the_flow() -> None:
    graph = build_graph(["S", ["C", 1, 2], 3], {})
    assert graph.depends_on == {1: frozenset(), 2: frozenset(), 3: frozenset({1, 2})}
    assert graph.dependents == {1: (3,), 2: (3,), 3: ()}
    assert graph.ref_dependents == {1: (), 2: (), 3: ()}


def test_build_graph_adds_reference_edges_to_concurrent_steps() -> None:
    flow = ["C", 1, 2, ["S", 3, 4]]
    inputs = {
        1: {"n": 1},
        2: {"x": {"$ref": [1, "k"]}},
        3: {},
        4: {"y": [{"$ref": [2]}], "z": {"$ref": [1]}},
    }
    graph = build_graph(flow, inputs)
    assert graph.depends_on == {
        1: frozenset(),
        2: frozenset({1}),
        3: frozenset(),
        4: frozenset({1, 2, 3}),
    }
    assert graph.dependents == {1: (2, 4), 2: (4,), 3: (4,), 4: ()}
    # only reference edges: what must be skipped if the producer is skipped
    assert graph.ref_dependents == {1: (2, 4), 2: (4,), 3: (), 4: ()}


def test_an_ordering_edge_that_is_also_a_reference_counts_once() -> None:
    graph = build_graph(["S", 1, 2], {2: {"a": {"$ref": [1]}, "b": {"$ref": [1, "x"]}}})
    assert graph.depends_on[2] == frozenset({1})
    assert graph.dependents[1] == (2,)
    assert graph.ref_dependents[1] == (2,)


def test_a_self_reference_is_not_a_dependency() -> None:
    graph = build_graph(["C", 1, 2], {1: {"me": {"$ref": [1]}}})
    assert graph.depends_on[1] == frozenset()


def test_check_acyclic_accepts_forward_flows_and_backward_references() -> None:
    graph = build_graph(
        ["S", 1, ["C", 2, 3], 4], {4: {"a": {"$ref": [1]}}, 3: {"b": {"$ref": [2]}}}
    )
    check_acyclic(graph)  # no exception
    assert ordered([1, 2, 3, 4], graph) == [1, 2, 3, 4]


def test_check_acyclic_refuses_a_forward_reference_in_a_sequence() -> None:
    # step 1 runs before step 2 but needs step 2's output: a deadlock
    graph = build_graph(["S", 1, 2], {1: {"a": {"$ref": [2, "x"]}}})
    with pytest.raises(ValueError, match=r"dependency cycle through steps \[1, 2\]"):
        check_acyclic(graph)


def test_check_acyclic_names_every_step_caught_in_a_longer_cycle_only() -> None:
    # 1 -> 2 -> 3 in sequence, 1 needs 3's output; 4 is independent and fine
    graph = build_graph(["C", ["S", 1, 2, 3], 4], {1: {"a": {"$ref": [3]}}})
    with pytest.raises(ValueError, match=r"through steps \[1, 2, 3\]"):
        check_acyclic(graph)


def test_check_acyclic_on_a_hand_built_two_step_cycle() -> None:
    graph = StepGraph(
        depends_on={1: frozenset({2}), 2: frozenset({1}), 3: frozenset()},
        dependents={1: (2,), 2: (1,), 3: ()},
        ref_dependents={1: (2,), 2: (1,), 3: ()},
    )
    with pytest.raises(ValueError, match="cycle"):
        check_acyclic(graph)


def test_ordered_respects_references_that_run_against_planning_order() -> None:
    # concurrent in the flow, but 1 needs 3 and 2 needs 1
    graph = build_graph(["C", 1, 2, 3], {1: {"a": {"$ref": [3]}}, 2: {"b": {"$ref": [1]}}})
    check_acyclic(graph)
    assert ordered([1, 2, 3], graph) == [3, 1, 2]
