"""Plan ids taken by a unique prefix, as git takes commits, on SQLite and PostgreSQL:
the whole id, a unique prefix, none, several (named), too short, and LIKE's wildcards
taken as the characters they are."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from mcoflow.engine import PlanNotFound, World
from mcoflow.engine.planner import Planner
from tests.integration.engine.engine_actions import Add

IDS = [
    "abcd0000000000000000000000000001",
    "abcd0000000000000000000000000002",
    "abce0000000000000000000000000003",
    "a_c%0000000000000000000000000004",
]


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    w = await World.open(db_url)
    planned = [dataclasses.replace(Planner().plan(Add, {"a": 1, "b": 2}), id=i) for i in IDS]
    await w.store.insert_plans(planned, start=False, by="test")
    try:
        yield w
    finally:
        await w.close()


async def test_a_whole_id_or_a_unique_prefix_gives_the_plan(world: World) -> None:
    assert await world.resolve_plan_id(IDS[2]) == IDS[2]
    assert await world.resolve_plan_id("abce") == IDS[2]
    assert await world.resolve_plan_id("abcd0000000000000000000000000002") == IDS[1]
    assert await world.resolve_plan_id(f"  {IDS[2][:6]} ") == IDS[2]  # pasted with spaces


async def test_no_match_and_several_matches_are_told_apart(world: World) -> None:
    with pytest.raises(PlanNotFound, match="no plan abcf"):
        await world.resolve_plan_id("abcf")
    with pytest.raises(PlanNotFound) as ambiguous:
        await world.resolve_plan_id("abcd")
    message = str(ambiguous.value)
    assert "ambiguous" in message and IDS[0] in message and IDS[1] in message
    assert IDS[2] not in message


async def test_a_short_prefix_is_refused_even_when_it_is_unique(world: World) -> None:
    with pytest.raises(PlanNotFound, match="too short; give at least 4 characters"):
        await world.resolve_plan_id("abc")
    with pytest.raises(PlanNotFound, match="too short"):
        await world.resolve_plan_id("")


async def test_like_wildcards_match_only_themselves(world: World) -> None:
    # '_' and '%' would match any character in LIKE: here they must match themselves
    assert await world.resolve_plan_id("a_c%") == IDS[3]
    with pytest.raises(PlanNotFound, match="no plan ab_d"):
        await world.resolve_plan_id("ab_d")
    with pytest.raises(PlanNotFound, match="no plan abc%0"):
        await world.resolve_plan_id("abc%0")
