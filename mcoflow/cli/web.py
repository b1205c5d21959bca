"""`mcoflow web ...`: the web console's users and API tokens. Only hashes are configured;
the password and the token are shown (or typed) once and stored nowhere."""

from __future__ import annotations

from typing import Annotated

import typer

web_app = typer.Typer(help="Users and API tokens of the web console.", no_args_is_help=True)


def _check_name(name: str) -> str:
    from mcoflow.settings import WEB_NAME

    if WEB_NAME.fullmatch(name) is None:
        raise typer.BadParameter("letters, digits and _ . @ - (at most 64), not starting with .@-")
    return name


NameArgument = Annotated[str, typer.Argument(help="who logs in", callback=_check_name)]
TokenName = Annotated[
    str, typer.Option("--name", help="whom the token acts as", callback=_check_name)
]


@web_app.command("hash-password")
def hash_password(name: NameArgument) -> None:
    """Print the web_users line for NAME. Asks for the password twice."""
    from mcoflow.web.auth import hash_password

    password = typer.prompt(
        f"password for {name}", hide_input=True, confirmation_prompt=True, err=True
    )
    if len(password) < 8:
        typer.echo("error: use at least 8 characters", err=True)
        raise typer.Exit(2)
    typer.echo(f"{name}:{hash_password(password)}")
    typer.echo(
        "add this line to web_users (mcoflow.yaml `web_users: [...]`, or "
        "MCOFLOW_WEB_USERS as a JSON list) and restart `mcoflow serve`",
        err=True,
    )


@web_app.command("new-token")
def new_token(name: TokenName = "api") -> None:
    """Print a new API token and its web_api_tokens line. The token is shown only now."""
    from mcoflow.web.auth import new_api_token

    token, digest = new_api_token()
    typer.echo(f"token: {token}")
    typer.echo(f"web_api_tokens line: {name}:{digest}")
    typer.echo(
        "callers send 'Authorization: Bearer TOKEN'; add the line to web_api_tokens "
        "(mcoflow.yaml, or MCOFLOW_WEB_API_TOKENS as a JSON list) and restart `mcoflow serve`",
        err=True,
    )
