"""Desk accounts in the database (issue 28 §3): adding an editor, removing one or
rotating a password used to mean editing the unit's environment and restarting.
Real HTTP against uvicorn (and Chromium for the admin's page), both databases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from digest.models import AuditEntry, Editor
from digest.team.accounts import AccountError, Accounts
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.serving import serving
from tests.support.web import PASSWORD, Client, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser

NEW = "новый-пароль-веры"


def seeded(services: Services, editors: str, admins: str = "") -> Services:
    cfg = services.settings.model_copy(
        update={
            "editors": SecretStr(editors),
            "desk_admins": admins,
            "base_url": "http://127.0.0.1",  # plain http: the session cookie is not Secure
        }
    )
    return Services(cfg, services.factory, clock=lambda: FIXED_NOW)


def test_passwords_are_argon2_hashes_and_the_environment_seeds_only_an_empty_table(
    services: Services,
) -> None:
    first = seeded(services, f"anna:{PASSWORD},boris:{PASSWORD}")
    accounts = first.accounts.listing()
    assert [(a.name, a.role) for a in accounts] == [("anna", "admin"), ("boris", "editor")]
    with services.factory() as session:
        hashes = list(session.scalars(select(Editor.password_hash)))
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    assert first.accounts.check("anna", PASSWORD) is not None
    assert first.accounts.check("anna", "wrong-password") is None
    assert first.accounts.check("nobody", PASSWORD) is None
    # The environment changed and the process restarted: the table is the truth now.
    later = seeded(services, f"mallory:{PASSWORD}", "mallory")
    assert [a.name for a in later.accounts.listing()] == ["anna", "boris"]
    assert later.accounts.check("mallory", PASSWORD) is None


def test_the_last_admin_stays_and_every_change_is_in_the_audit_log(services: Services) -> None:
    accounts = seeded(services, f"anna:{PASSWORD}").accounts
    with pytest.raises(AccountError, match="последний администратор"):
        accounts.remove("anna", "cli:root")
    with pytest.raises(AccountError, match="последний администратор"):
        accounts.set_role("anna", "editor", "cli:root")
    with pytest.raises(AccountError, match="от 8"):
        accounts.add("vera", "short", "editor", "anna")
    with pytest.raises(AccountError, match="не годится"):
        accounts.add("vera\nadmin", PASSWORD, "editor", "anna")
    with pytest.raises(AccountError, match="Роль"):
        accounts.add("vera", PASSWORD, "root", "anna")
    accounts.add("vera", PASSWORD, "admin", "anna")
    with pytest.raises(AccountError, match="уже есть"):
        accounts.add("vera", PASSWORD, "editor", "anna")
    accounts.remove("anna", "vera")
    with services.factory() as session:
        log = [(a.editor, a.action, a.detail) for a in session.scalars(select(AuditEntry))]
    assert log == [
        ("anna", "editor add", {"name": "vera", "role": "admin"}),
        ("vera", "editor remove", {"name": "anna"}),
    ]
    assert isinstance(accounts, Accounts)


def test_a_new_password_or_a_removal_ends_the_sessions_at_once(services: Services) -> None:
    services = seeded(services, f"anna:{PASSWORD}")
    services.accounts.add("vera", PASSWORD, "editor", "anna")
    app = create_app(WebContext(services.settings, services.factory, clock=services.clock))
    with serving(app) as base:
        vera = Client(base)
        assert vera.login("vera") == 303 and vera.request("/desk/")[0] == 200
        services.accounts.passwd("vera", NEW, "anna")
        assert vera.request("/desk/")[0] == 303  # back to the login page
        assert vera.login("vera") == 401 and vera.login("vera", NEW) == 303
        assert vera.request("/desk/")[0] == 200
        assert vera.request("/desk/editors")[0] == 403  # an editor, not an admin
        services.accounts.remove("vera", "anna")
        assert vera.request("/desk/")[0] == 303
        assert vera.login("vera", NEW) == 401


def test_an_admin_manages_the_accounts_in_the_desk_and_reads_the_log(
    browser: Browser, desk: tuple[Services, str]
) -> None:
    services, base = desk
    page = browser.new_page()
    log_in(page, base)
    page.get_by_role("link", name="Учётные записи").click()
    form = page.locator("#add")
    form.get_by_label("Имя").fill("vera")
    form.get_by_label("Пароль").fill(PASSWORD)
    with page.expect_navigation():
        form.get_by_role("button", name="Создать").click()
    assert "vera: учётная запись создана" in page.get_by_role("status").inner_text()
    row = page.locator("#accounts tr", has_text="vera")
    assert "редактор" in row.inner_text()
    with page.expect_navigation():
        row.get_by_role("button", name="Сделать администратором").click()
    assert "администратор" in page.locator("#accounts tr", has_text="vera").inner_text()
    row = page.locator("#accounts tr", has_text="vera")
    row.get_by_label("Новый пароль для vera").fill(NEW)
    with page.expect_navigation():
        row.get_by_role("button", name="Сменить пароль").click()
    assert services.accounts.check("vera", NEW) is not None
    with page.expect_navigation():
        page.locator("#accounts tr", has_text="boris").get_by_role("button", name="Удалить").click()
    assert "boris: учётная запись удалена" in page.get_by_role("status").inner_text()
    page.get_by_role("link", name="Журнал", exact=True).click()
    log = page.locator("#log").inner_text()
    for line in ("editor add\tvera (editor)", "editor role\tvera (admin)", "editor remove\tboris"):
        assert line in log, log
    assert "editor passwd\tvera" in log and NEW not in page.content()
    page.close()
