"""/api/v1/groups: saved host groups (named filters, ``@NAME`` in any filter)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mcoflow.actions.host_groups import MAX_DESCRIPTION, MAX_GROUP_FILTER, HostGroups
from mcoflow.engine import World
from mcoflow.engine.store.groups import HostGroup
from mcoflow.job_request import JobInputError
from mcoflow.web.api import current_user, known_query_only
from mcoflow.web.csrf import check_origin
from mcoflow.web.schemas import ErrorOut
from mcoflow.web.strict import known_body_only

router = APIRouter(prefix="/api/v1", tags=["groups"], dependencies=[Depends(known_query_only)])
writes = APIRouter(
    prefix="/api/v1",
    tags=["groups"],
    dependencies=[Depends(check_origin), Depends(known_query_only), Depends(known_body_only)],
)
User = Annotated[str, Depends(current_user)]
GroupName = Annotated[str, Path(min_length=1, max_length=100, description="the group's name")]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "the request body is not JSON"),
        (401, "not authenticated"),
        (403, "refused"),
        (404, "no such group"),
        (409, "another group uses it"),
        (422, "invalid input; `field` names it"),
        (503, "the database is unreachable"),
    )
}


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
        description="letters, digits, '_', '.', '-'; used as @name",
    )
    filter: str = Field(
        min_length=1,
        max_length=MAX_GROUP_FILTER,
        pattern=r"\S",
        description="the filter grammar: 'class:web and (os_family=debian or @big)'",
    )
    description: str = Field("", max_length=MAX_DESCRIPTION)
    replace: bool = Field(False, description="replace a group of that name")


class GroupOut(BaseModel):
    name: str
    filter: str = Field(description="as saved; its @groups are expanded when a job starts")
    description: str
    created_at: float = Field(description="epoch seconds")
    created_by: str

    @classmethod
    def of(cls, group: HostGroup) -> GroupOut:
        return cls(
            name=group.name,
            filter=group.filter,
            description=group.description,
            created_at=group.created_at,
            created_by=group.created_by,
        )


class GroupsOut(BaseModel):
    groups: list[GroupOut] = Field(description="by name")


class GroupDetailOut(GroupOut):
    hosts: list[str] = Field(description="the known hosts it selects now, by identity")


def _groups(request: Request) -> HostGroups:
    world: World = request.app.state.world
    return HostGroups(world.store)


def _not_found(exc: JobInputError) -> JobInputError | HTTPException:
    if exc.message.startswith("no saved group named"):
        return HTTPException(404, exc.message)
    return exc


@router.get("/groups", response_model=GroupsOut, responses=ERRORS, summary="Saved host groups")
async def list_groups(request: Request, _user: User) -> GroupsOut:
    return GroupsOut(groups=[GroupOut.of(g) for g in await _groups(request).all()])


@router.get(
    "/groups/{name}",
    response_model=GroupDetailOut,
    responses=ERRORS,
    summary="A saved group and the known hosts it selects",
)
async def show_group(name: GroupName, request: Request, _user: User) -> GroupDetailOut:
    groups = _groups(request)
    try:
        group = await groups.get(name)
        hosts = [h.identity for h in await groups.hosts(name)]
    except JobInputError as exc:
        raise _not_found(exc) from None
    return GroupDetailOut(**GroupOut.of(group).model_dump(), hosts=hosts)


@writes.post(
    "/groups",
    status_code=201,
    response_model=GroupOut,
    responses=ERRORS,
    summary="Save a group (checked: its filter, the groups it uses, no cycle)",
)
async def add_group(body: GroupIn, request: Request, user: User) -> GroupOut:
    group = await _groups(request).add(
        body.name, body.filter, description=body.description, by=user, replace=body.replace
    )
    return GroupOut.of(group)


@writes.delete(
    "/groups/{name}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="Remove a group that no other group uses",
)
async def remove_group(name: GroupName, request: Request, _user: User) -> Response:
    try:
        await _groups(request).remove(name)
    except JobInputError as exc:
        if exc.message.startswith("no saved group named"):
            raise HTTPException(404, exc.message) from None
        raise HTTPException(409, exc.message) from None
    return Response(status_code=204)
