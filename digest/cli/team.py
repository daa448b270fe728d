"""`digest editors`: the desk's accounts (issue 28 §3), kept in the database.

A password is never an argument (it would stay in the shell's history and in
`ps`): it is asked twice at a terminal, or read from the first line of stdin
with --password-stdin (for scripts and configuration management).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from digest.cli.app import console, editors_app, errors, fail, settings, wire
from digest.cli.editions import operator

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The account's name, e.g. anna.")]
StdinOption = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from stdin's first line."),
]


def password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("give the password at a terminal, or with --password-stdin", 2)
    first = typer.prompt("password", hide_input=True, err=True)
    if typer.prompt("again", hide_input=True, err=True) != first:
        fail("the two passwords differ")
    return str(first)


@editors_app.command("add")
def editors_add(
    name: NameArg,
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin: readers, accounts, the audit log.")
    ] = False,
    from_stdin: StdinOption = False,
) -> None:
    """Add a desk account (an editor, or with --admin an admin).

    Example: digest editors add anna --admin
    """
    with errors():
        services = wire(settings())
        account = services.accounts.add(
            name, password(from_stdin), "admin" if admin else "editor", operator()
        )
    console.print(f"{account.name}: added, {account.role}")


@editors_app.command("remove")
def editors_remove(name: NameArg) -> None:
    """Remove a desk account; its sessions end at once. The last admin stays.

    Example: digest editors remove boris
    """
    with errors():
        wire(settings()).accounts.remove(name, operator())
    console.print(f"{name}: removed")


@editors_app.command("passwd")
def editors_passwd(name: NameArg, from_stdin: StdinOption = False) -> None:
    """Set a new password; every session begun with the old one ends.

    Example: digest editors passwd anna
    """
    with errors():
        wire(settings()).accounts.passwd(name, password(from_stdin), operator())
    console.print(f"{name}: new password set")


@editors_app.command("role")
def editors_role(
    name: NameArg,
    role: Annotated[str, typer.Argument(metavar="ROLE", help="editor or admin.")],
) -> None:
    """Make an account an editor or an admin. The last admin stays one.

    Example: digest editors role boris admin
    """
    with errors():
        wire(settings()).accounts.set_role(name, role, operator())
    console.print(f"{name}: {role}")


@editors_app.command("list")
def editors_list() -> None:
    """The desk's accounts, their roles and when each password was set.

    Example: digest editors list
    """
    with errors():
        services = wire(settings())
        accounts = services.accounts.listing()
    zone = services.settings.zone
    for a in accounts:
        changed = a.password_changed_at.astimezone(zone)
        console.print(f"{a.name:<20} {a.role:<7} password set {changed:%d.%m.%Y %H:%M}")
    if not accounts:
        console.print("no accounts: `digest editors add NAME --admin`")
