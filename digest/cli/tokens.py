"""`digest tokens`: the HTTP API's tokens (issue 30). A token is printed once, at
`create`; only a keyed hash of it is kept, so a lost token is revoked and made
again, never shown."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.app import console, errors, settings, tokens_app, wire
from digest.cli.editions import operator
from digest.kinds import API_SCOPES as SCOPES

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The token's name, e.g. site.")]


@tokens_app.command("create")
def tokens_create(
    name: NameArg,
    scope: Annotated[
        list[str],
        typer.Option("--scope", help=f"What it may do (again for more): {', '.join(SCOPES)}."),
    ],
) -> None:
    """Make a token and print it, once.

    Example: digest tokens create site --scope subscribers:read --scope subscribers:write
    """
    with errors():
        token, info = wire(settings()).api_tokens.create(name, scope, operator())
    console.print(f"{info.name}: {' '.join(info.scopes)}", highlight=False)
    print(token)  # alone on its line, for `| tail -1`; not through rich (no wrapping)
    console.print("Keep it now: it is not shown again (only its hash is kept).", style="dim")


@tokens_app.command("list")
def tokens_list() -> None:
    """The tokens, their scopes, when each was last used; revoked ones say so.

    Example: digest tokens list
    """
    with errors():
        services = wire(settings())
        found = services.api_tokens.listing()
    zone = services.settings.zone
    for t in found:
        used = (
            f"used {t.last_used_at.astimezone(zone):%d.%m.%Y %H:%M}"
            if t.last_used_at
            else "never used"
        )
        gone = f", revoked {t.revoked_at.astimezone(zone):%d.%m.%Y %H:%M}" if t.revoked_at else ""
        line = f"{t.name:<20} {' '.join(t.scopes)}  {used}{gone}"
        console.print(line, highlight=False, soft_wrap=True)
    if not found:
        console.print("no tokens: `digest tokens create NAME --scope …`")


@tokens_app.command("revoke")
def tokens_revoke(name: NameArg) -> None:
    """Revoke a token: its next call is refused.

    Example: digest tokens revoke site
    """
    with errors():
        wire(settings()).api_tokens.revoke(name, operator())
    console.print(f"{name}: revoked")
