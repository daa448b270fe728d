"""The house rules, read from the code's syntax tree (docs/ARCHITECTURE.md draws the house).

- SQL lives in ``store/``: nothing else imports SQLAlchemy but ``db`` (the engine and
  the session types), ``models`` (the mappings) and the migrations.
- The unit of work too: outside ``store/`` no module calls the session's ``get``,
  ``add``, ``delete``, ``flush``, ``execute`` and the like; each goes through a named
  ``store`` function.
- Floors: doors → services → stages → store → models. A module imports from its own
  floor or one below, never from above.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "digest"

# The floor of each room, by module name (the longest matching prefix wins).
FLOORS: dict[str, int] = {
    # 0 — the data model and what everything may use
    "errors": 0,
    "models": 0,
    "kinds": 0,  # the model's plain values: statuses, the clock (no SQLAlchemy)
    "lazy": 0,  # facades whose names load when first asked (store, models)
    "files": 0,
    "config": 0,
    "logs": 0,
    "__init__": 0,
    # 1 — the database
    "db": 1,
    "store": 1,
    "outage": 1,  # the database away: waited out with back-off, then DatabaseAway
    # 2 — the stages, each a room of its own
    "ingest": 2,
    "select": 2,
    "render": 2,
    "compose": 2,
    "headers": 2,
    "dkim": 2,
    "tokens": 2,
    "capture": 2,
    "audience": 2,
    "track": 2,
    "observe": 2,  # health checks and metrics: read by doctor, the web, workers
    "sources": 2,  # site databases read (issue 29): files, presets, rows, the sync
    "schedule.files": 2,
    "send": 2,
    "team": 2,  # the desk's accounts and logins: throttle and sessions, no HTTP
    "web.guard": 2,  # ASGI middleware: body cap and headers, no routes
    "toolkit": 2,  # what the services make mail with: composers, signers, relays, DKIM
    # 3 — services: they wire the stages into what a person asks for
    "edition": 3,
    "schedule": 3,
    "doctor": 3,
    "support": 3,  # the Readers page's service: reader care, audited
    "demo": 3,
    # 4 — the composition root: builds every service; nothing below imports it
    "wiring": 4,
    # 5 — the doors: parse, call one service, print
    "cli": 5,
    "web": 5,
    "api": 5,  # the HTTP API (issue 30): parse, call one service, answer JSON
    "__main__": 5,
}
SQL_ALLOWED = ("store", "db", "models", "migrations")


@functools.cache
def modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        name = name.removesuffix(".__init__") if name != "__init__" else name
        found.append((name, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def imported(tree: ast.Module, here: str) -> Iterator[str]:
    """Absolute module names a module imports (``from digest import store`` → digest.store)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                parts = here.split(".")[: -node.level] if node.level else []
                base = ".".join(["digest", *parts, node.module])
            inner = [f"{base}.{alias.name}" for alias in node.names]
            # `from digest.web import auth` depends on digest.team.auth, not the door.
            if not all(name.removeprefix("digest.") in module_names() for name in inner):
                yield base
            if base == "digest" or base.startswith("digest."):
                yield from inner


def module_names() -> set[str]:
    return {name for name, _ in modules()}


def floor(name: str) -> int:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise AssertionError(f"digest.{name} has no floor: add it to FLOORS in tests/test_house.py")


def inside(name: str, rooms: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in rooms)


def test_only_the_store_speaks_sql() -> None:
    offenders = [
        f"digest.{name} imports {target}"
        for name, tree in modules()
        if not inside(name, SQL_ALLOWED)
        for target in imported(tree, name)
        if target == "sqlalchemy" or target.startswith("sqlalchemy.")
    ]
    assert not offenders, "\n".join(offenders)


SESSION_CALLS = {
    "get", "add", "add_all", "delete", "flush", "refresh", "expire", "merge",
    "execute", "scalar", "scalars", "query", "get_one",
}  # fmt: skip
SESSION_ALLOWED = ("store", "db", "migrations")


def session_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """Calls of an ORM session's methods on a name that holds one (``session``,
    ``db_session``, ``s`` in a ``with factory() as s``): not ``request.session``."""
    held = {"session", "db_session"}
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                if (
                    isinstance(item.optional_vars, ast.Name)
                    and "factory" in ast.unparse(item.context_expr)
                ) or "transaction" in ast.unparse(item.context_expr):
                    held.add(item.optional_vars.id)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in held
        ):
            yield node


def test_only_the_store_calls_the_session() -> None:
    """Issue 26 §2: 18 modules called session.get/add/delete/flush themselves."""
    offenders = [
        f"digest/{name.replace('.', '/')}.py:{call.lineno}: {ast.unparse(call.func)}(…)"
        for name, tree in modules()
        if not inside(name, SESSION_ALLOWED)
        for call in session_calls(tree)
    ]
    assert not offenders, "call a named store function instead:\n" + "\n".join(offenders)


def test_the_session_rule_sees_what_it_is_meant_to_see() -> None:
    """The rule above is only as good as its reading of the code."""
    code = ast.parse(
        "with transaction(f) as s:\n    s.add(row)\n"
        "session.get(Edition, 1)\nrequest.session.get('sid')\nsettings.get('x')\n"
    )
    assert sorted(ast.unparse(c.func) for c in session_calls(code)) == ["s.add", "session.get"]


DOORS = ("cli", "web", "api")


def test_the_doors_call_services_not_the_store() -> None:
    """Issue 26 §2: ``cli.app.find`` and ``web.archive`` queried the store."""
    offenders = [
        f"digest.{name} imports {target}"
        for name, tree in modules()
        if inside(name, DOORS)
        for target in imported(tree, name)
        if target == "digest.store" or target.startswith("digest.store.")
    ]
    assert not offenders, "\n".join(offenders)


def test_every_module_has_a_floor() -> None:
    for name, _ in modules():
        if not inside(name, ("migrations",)):
            floor(name)


@pytest.mark.parametrize("name", [n for n, _ in modules() if not n.startswith("migrations")])
def test_no_module_imports_from_a_floor_above(name: str) -> None:
    tree = dict(modules())[name]
    mine = floor(name)
    above = []
    for target in imported(tree, name):
        if not target.startswith("digest."):
            continue
        other = target.removeprefix("digest.")
        if other.split(".")[0] not in {n.split(".")[0] for n, _ in modules()}:
            continue  # a name imported from a package, not a module
        if floor(other) > mine:
            above.append(f"{target} (floor {floor(other)})")
    assert not above, f"digest.{name} (floor {mine}) imports from above: {above}"


def test_the_checks_catch_what_they_look_for() -> None:
    """The walker itself: a forged module that breaks both rules is caught."""
    tree = ast.parse("from sqlalchemy import select\nfrom digest.cli import app\n")
    names = set(imported(tree, "render"))
    assert "sqlalchemy" in names and "digest.cli.app" in names
    assert floor("cli.app") > floor("render")
    # An import inside a function or under TYPE_CHECKING runs upward all the same
    # (issue 26: the sender process wired its services from a function).
    hidden = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from digest.wiring import Services\n"
        "def main() -> None:\n    from digest.edition.build import Editions\n"
    )
    names = set(imported(hidden, "send.senders"))
    assert {"digest.wiring.Services", "digest.edition.build.Editions"} <= names
    assert floor("wiring") > floor("edition.build") > floor("send.senders")


def test_nothing_below_the_doors_imports_the_composition_root() -> None:
    importers = sorted(
        name
        for name, tree in modules()
        if any(t == "digest.wiring" or t.startswith("digest.wiring.") for t in imported(tree, name))
    )
    assert importers, "the doors build the services from wiring"
    assert all(floor(name) > floor("wiring") for name in importers), importers


# -- sizes: small rooms, short functions, classes of one job ----------------------

MAX_MODULE_LINES = 400
MAX_MEDIAN_LINES = 200
MAX_FUNCTION_LINES = 60
MAX_METHODS = 15
# Classes allowed more methods, and why.
MANY_METHODS: dict[str, str] = {}


def lines_of(name: str) -> int:
    path = PACKAGE / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE / name.replace(".", "/") / "__init__.py"
    return len(path.read_text(encoding="utf-8").splitlines())


def code_modules() -> list[str]:
    """Every module but the migrations (a migration is a record, not a room)."""
    return [n for n, _ in modules() if not inside(n, ("migrations",))]


def code_trees() -> list[tuple[str, ast.Module]]:
    return [(n, tree) for n, tree in modules() if not inside(n, ("migrations",))]


def test_no_module_is_over_400_lines_and_the_median_is_under_200() -> None:
    sizes = {name: lines_of(name) for name in code_modules()}
    big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, big
    # Package markers (a docstring and re-exports) would flatter the median: not counted.
    counted = sorted(n for name, n in sizes.items() if n > 20)
    assert counted[len(counted) // 2] < MAX_MEDIAN_LINES, counted


def test_no_function_is_over_60_lines() -> None:
    long = [
        f"digest.{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in code_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_no_class_has_more_than_15_methods() -> None:
    crowded = []
    for name, tree in code_trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or f"{name}.{node.name}" in MANY_METHODS:
                continue
            methods = [
                n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            if len(methods) > MAX_METHODS:
                crowded.append(f"digest.{name}.{node.name}: {len(methods)} methods")
    assert not crowded, crowded


def test_no_import_cycle_between_modules() -> None:
    """Module-level imports only (TYPE_CHECKING blocks are for types, not loading)."""
    names = {n for n, _ in modules()}
    graph: dict[str, set[str]] = {}
    for name, tree in modules():
        deps = set()
        for node in tree.body:
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("digest")
            ):
                base = node.module.removeprefix("digest").removeprefix(".")
                deps |= {f"{base}.{a.name}".strip(".") for a in node.names} | {base}
        graph[name] = {d for d in deps if d in names and d != name}
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(graph[node]):
            if seen.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError(" → ".join(f"digest.{m}" for m in cycle))
            if dep not in seen:
                visit(dep, [*path, dep])
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])


# -- a command answers at once -------------------------------------------------------

# What `digest --help`, `--version` and every command pay before they parse their
# arguments (issue 26 §3): none of these. A command imports what it uses when it runs.
HEAVY_AT_START = ("alembic", "premailer", "uvicorn", "apscheduler", "sqlalchemy", "jinja2")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code``, each by its full name and
    its top package's."""
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = set(done.stdout.split())
    return names | {name.split(".")[0] for name in names}


def test_importing_the_cli_loads_no_heavy_library() -> None:
    loaded = loaded_after("import digest.cli")
    assert "typer" in loaded  # the probe ran
    assert not loaded & set(HEAVY_AT_START), sorted(loaded & set(HEAVY_AT_START))


def test_each_command_line_loads_the_module_of_its_first_word() -> None:
    """``digest status`` loads digest.cli.editions alone (issue 31): ``HOMES`` names
    the module that registers each top-level command and group, every one of them."""
    from digest.cli import HOMES, everything

    app = everything()
    registered = {
        (c.name or c.callback.__name__): c.callback.__module__  # type: ignore[union-attr]
        for c in app.registered_commands
    }
    for group in app.registered_groups:
        owners = {c.callback.__module__ for c in group.typer_instance.registered_commands}  # type: ignore[union-attr]
        assert len(owners) == 1, (group.name, owners)
        registered[str(group.name)] = owners.pop()
    assert {name: home.removeprefix("digest.cli.") for name, home in registered.items()} == HOMES
    probe = (
        "import sys\nsys.argv = ['digest', 'status', '--help']\n"
        "from digest.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    )
    loaded = loaded_after(probe)
    assert "digest.cli.editions" in loaded  # the probe ran the command
    others = {f"digest.cli.{m}" for m in ("demo", "ops", "sending", "sources", "team", "tokens")}
    assert not loaded & others, sorted(loaded & others)


# What the send's machinery and the letter's renderer bring: a command that wires
# the services and asks for the desk's accounts (`digest editors list`) loads none.
SENDING_AND_RENDERING = ("premailer", "aiosmtplib", "apscheduler", "feedparser", "dkim", "jinja2")


def test_the_composition_root_builds_and_imports_a_service_when_it_is_asked_for() -> None:
    loaded = loaded_after(
        "from digest import db\n"
        "from digest.config import Settings\n"
        "from digest.kinds import utcnow\n"
        "from digest.wiring import Services\n"
        "cfg = Settings(database_url='sqlite://', secret_key='k' * 32)\n"
        "services = Services(cfg, db.session_factory(db.make_engine(cfg.database)), utcnow)\n"
        "accounts = services.accounts\n"
        "assert services.accounts is accounts"
    )
    assert "argon2" in loaded and "digest.team.accounts" in loaded  # the probe ran
    assert not loaded & set(SENDING_AND_RENDERING), sorted(loaded & set(SENDING_AND_RENDERING))


def test_the_sources_sync_loads_the_feed_reader_only_for_a_feed() -> None:
    """Every build syncs the sources first, through ingest: feedparser and its charset
    detectors come only when a feed is read (40 of a send's 1 040 modules)."""
    loaded = loaded_after("import digest.sources.sync")
    assert "digest.ingest.read" in loaded  # the probe loaded what a build's sync does
    assert not {"feedparser", "chardet"} & loaded, sorted({"feedparser", "chardet"} & loaded)


def test_one_of_each_service_though_threads_ask_at_once() -> None:
    """The web app's threads may ask for a service first at the same moment."""
    import threading

    from digest import db
    from digest.config import Settings
    from digest.kinds import utcnow
    from digest.wiring import Services

    cfg = Settings(database_url="sqlite://", secret_key="k" * 32)
    services = Services(cfg, db.session_factory(db.make_engine(cfg.database)), utcnow)
    start = threading.Barrier(8)
    seen: list[object] = []

    def ask() -> None:
        start.wait()
        seen.append(services.shaping)  # builds desk, previews, sender, … on the way

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) == 8 and len({id(s) for s in seen}) == 1
    assert services.shaping.previews is services.previews


# -- the tests' own house ------------------------------------------------------------

TESTS = PACKAGE.parent / "tests"


def test_a_test_module_imports_helpers_from_support_never_from_another_test() -> None:
    """Shared helpers live in tests/support/ (issue 26: 26 imports from one test
    module into another, with noqa for the fixtures they dragged along)."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for target in imported(ast.parse(path.read_text(encoding="utf-8")), "tests"):
            parts = target.split(".")
            if parts[0] == "tests" and (
                "conftest" in parts or any(p.startswith("test_") for p in parts[1:])
            ):
                offenders.append(f"{path.relative_to(TESTS)} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_a_grouped_test_that_pytest_xdist_did_not_group_is_caught() -> None:
    """The timing tests share one xdist group; pytest 9.2 with pytest-xdist 3.8 dropped
    every group silently (pytest-xdist#1386) and they ran beside each other for days.
    tiers.lost_group fails such a test at its setup."""
    from types import SimpleNamespace

    from tests.support.tiers import lost_group

    def item(nodeid: str, grouped: bool = True, loadgroup: bool = True) -> pytest.Item:
        mark = pytest.mark.xdist_group("timing").mark if grouped else None
        return cast(
            pytest.Item,
            SimpleNamespace(
                config=SimpleNamespace(option=SimpleNamespace(loadgroup=loadgroup)),
                nodeid=nodeid,
                get_closest_marker=lambda name: mark if name == "xdist_group" else None,
            ),
        )

    assert lost_group(item("t.py::test_rate[a@b]"))  # an "@" in a parameter is no group
    assert not lost_group(item("t.py::test_rate[a@b]@timing"))
    assert not lost_group(item("t.py::test_plain", grouped=False))
    assert not lost_group(item("t.py::test_rate", loadgroup=False))  # no xdist: no groups
