"""The demo's readers as `make demo` makes them (issue 27 §4): their names are
what a Russian reader would expect to see in «Кому:» («Людмила Морозов» was not)."""

from __future__ import annotations

from digest import demo
from digest.demo.words import FIRST, LAST, WOMEN
from digest.models import Subscriber
from digest.wiring import Services
from tests.support.common import FIXED_NOW


def test_the_demo_readers_names_agree_in_gender(services: Services) -> None:
    demo.add_subscribers(services.factory, 400, now=FIXED_NOW)
    with services.factory() as session:
        names = [s.name for s in session.query(Subscriber) if s.name]
    assert len(names) > 300
    women = men = 0
    for name in names:
        first, last = name.split(" ")
        assert first in FIRST, name
        if first in WOMEN:
            women += 1
            assert last.endswith("а") and last[:-1] in LAST, name
        else:
            men += 1
            assert last in LAST, name
    assert women and men  # both were drawn: the check above saw each kind
