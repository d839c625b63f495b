"""What ``last-run.json`` keeps of the index pages, and the order a no-op check asks for them."""

from __future__ import annotations

from rewheel.core import runstate


def test_the_state_keeps_the_size_of_each_page_it_keeps() -> None:
    data = runstate.state("fp", {"b": "2" * 64, "a": "1" * 64}, {"a": 10, "b": 20, "gone": 5})
    assert data["pages"] == {"a": "1" * 64, "b": "2" * 64}
    assert data["page_bytes"] == {"a": 10, "b": 20}  # only pages the state keeps
    assert "page_bytes" not in runstate.state("fp", {"a": "1" * 64})


def test_pages_are_asked_for_the_largest_first_and_those_without_a_size_last() -> None:
    pages = {name: "0" * 64 for name in ("aiohttp", "six", "yarl", "numpy", "new")}
    sizes = {"aiohttp": 4_800_000, "six": 9_000, "yarl": 2_400_000, "numpy": 1_900_000}
    last = runstate.state("fp", pages, sizes)
    assert runstate.largest_first(last) == ["aiohttp", "yarl", "numpy", "six", "new"]


def test_sizes_a_hand_edited_state_gets_wrong_only_change_the_order() -> None:
    last = {
        "pages": {"a": "0" * 64, "b": "0" * 64, "c": "0" * 64},
        "page_bytes": {"a": "big", "b": 3, "c": None},
    }
    assert runstate.largest_first(last) == ["b", "a", "c"]
    assert runstate.largest_first({**last, "page_bytes": [1, 2]}) == ["a", "b", "c"]
    assert runstate.largest_first({"pages": "nothing"}) == []
