"""The Groups page: saved host groups (named filters, used as ``@NAME`` in any filter);
add, replace and remove them. Each links to the Hosts page filtered by it."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mcoflow.actions.host_groups import HostGroups
from mcoflow.engine import World
from mcoflow.job_request import JobInputError
from mcoflow.web.auth import page_user
from mcoflow.web.csrf import require_csrf
from mcoflow.web.strict import known_form_only
from mcoflow.web.templating import render
from mcoflow.web.views import fmt_time

router = APIRouter(include_in_schema=False)
User = Annotated[str, Depends(page_user)]
EMPTY_FORM = {"name": "", "filter": "", "description": "", "replace": ""}


def _groups(request: Request) -> HostGroups:
    world: World = request.app.state.world
    return HostGroups(world.store)


async def _page(
    request: Request,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    notice: str = "",
) -> Response:
    groups = _groups(request)
    rows: list[dict[str, Any]] = []
    for group in await groups.all():
        try:
            count: int | str = len(await groups.hosts(group.name))
        except JobInputError as exc:  # a group it uses was changed since: say why
            count = exc.message
        rows.append(
            {
                "name": group.name,
                "filter": group.filter,
                "description": group.description,
                "created": f"{fmt_time(group.created_at)} by {group.created_by}",
                "hosts": count,
                "hosts_url": "/hosts?filter=" + quote(f"@{group.name}"),
            }
        )
    context = {"nav": "groups", "rows": rows, "form": form, "errors": errors, "notice": notice}
    return render(request, "groups.html", context, status_code=status)


@router.get("/groups")
async def groups_page(request: Request, _user: User) -> Response:
    return await _page(request, dict(EMPTY_FORM), {})


@router.post("/groups", dependencies=[Depends(require_csrf), Depends(known_form_only)])
async def add_group(
    request: Request,
    user: User,
    name: Annotated[str, Form(max_length=200)] = "",
    filter: Annotated[str, Form(max_length=10_000)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    replace: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    form = {"name": name, "filter": filter, "description": description, "replace": replace}
    try:
        await _groups(request).add(
            name.strip().removeprefix("@"),
            filter,
            description=description,
            by=user,
            replace=bool(replace),
        )
    except JobInputError as exc:
        return await _page(request, form, {exc.field: exc.message}, status=422)
    return RedirectResponse("/groups", status_code=303)


@router.post(
    "/groups/{name}/remove", dependencies=[Depends(require_csrf), Depends(known_form_only)]
)
async def remove_group(request: Request, _user: User, name: str) -> Response:
    try:
        await _groups(request).remove(name)
    except JobInputError as exc:
        return await _page(request, dict(EMPTY_FORM), {"remove": exc.message}, status=409)
    return RedirectResponse("/groups", status_code=303)
