"""The README is checked against the code: every setting and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digest.cli import everything
from digest.config import Settings, env_name
from digest.track.replies import NO_REPLY, RULES, Rule

app = everything()  # every command registered, as `digest --help` has them

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
TABLE = {m.group(1) for m in re.finditer(r"^\| `(DIGEST_[A-Z0-9_]+)` \|", README, re.M)}


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme_table(field: str) -> None:
    assert env_name(field) in TABLE


def test_the_table_lists_no_setting_that_does_not_exist() -> None:
    known = {env_name(f) for f in Settings.model_fields} | {"DIGEST_CONFIG"}
    assert known >= TABLE


def test_every_command_is_in_the_readme() -> None:
    import typer.main

    group = typer.main.get_command(app)
    names = set(group.commands)  # type: ignore[attr-defined]
    assert {"ingest", "demo", "preview", "send", "status", "db"} <= names
    for name in names - {"db"}:
        assert f"digest {name}" in README, name
    assert "digest db upgrade" in README


def test_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("rule", [*RULES, NO_REPLY], ids=lambda r: r.name)
def test_the_delivery_rules_table_is_the_codes_own(rule: Rule) -> None:
    """One table, in the code once (digest.replies.RULES) and here for people."""
    ex = "<br>".join(f"`{e}`" for e in rule.examples) or "refused, reset, timed out, TLS failed"
    assert f"| {ex} | {rule.name} | {rule.recipient} | {rule.domain} |" in README


def test_the_readme_links_to_the_docs_and_to_nothing_outside_the_repository() -> None:
    root = Path(__file__).resolve().parents[1]
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", README)]
    assert {"docs/ARCHITECTURE.md", "docs/MAIL-RULES.md", "docs/SECURITY.md"} <= set(targets)
    for target in targets:
        assert "://" not in target and not target.startswith(".."), target
        assert (root / target).exists(), target


def test_the_architecture_names_every_room() -> None:
    """Each package and top-level module of digest/ has its line in docs/ARCHITECTURE.md."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    package = root / "digest"
    rooms = {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    missing = [room for room in sorted(rooms - {"migrations"}) if f"`{room}" not in page]
    assert not missing, missing


def test_every_path_the_docs_name_exists() -> None:
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for path in re.findall(r"`((?:digest|tests|bench|templates|docs)/[\w/.-]*\w)`", text):
            assert (root / path).exists(), f"{page.name} names {path}, which is not there"


def test_every_test_the_threat_model_names_exists() -> None:
    """docs/SECURITY.md proves each control by a test: that test must be there."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    named = re.findall(r"`(?:((?:unit|integration|acceptance)/test_\w+\.py))?::(test_\w+)`", page)
    files = re.findall(r"`((?:unit|integration|acceptance)/test_\w+\.py)(?:::test_\w+)?`", page)
    assert len(named) >= 30
    current = ""
    for line in page.splitlines():
        for file, test in re.findall(
            r"`(?:((?:unit|integration|acceptance)/test_\w+\.py))?::(test_\w+)`", line
        ):
            current = file or current
            source = (root / "tests" / current).read_text(encoding="utf-8")
            assert f"def {test}(" in source, f"{current}::{test} is not there"
    for file in files:
        assert (root / "tests" / file).exists(), file


def test_the_tours_schema_revision_is_the_newest_migration() -> None:
    """The tour pastes `digest db upgrade` and `digest doctor`: their revision is
    the newest migration's, or a newcomer reads a number their run never prints
    (the tour said 0024 and 0021 for three migrations)."""
    root = Path(__file__).resolve().parents[1]
    newest = max(p.name[:4] for p in (root / "digest/migrations/versions").glob("[0-9]*.py"))
    said = re.findall(r"(?:revision |empty → )(\d{4})\b", README)
    assert said, "the tour shows no revision"
    assert set(said) == {newest}, (said, newest)
