"""The suite's tiers, named with markers, and the order it runs in (issue 26).

- ``unit``, ``integration``, ``acceptance``: by folder.
- ``browser`` (Chromium), ``postfix`` (the private Postfix), ``outage`` (a database
  stopped and started), ``postgres``, ``thunderbird`` (the letter in Thunderbird
  under Xvfb): the real parts a test needs.
- ``mariadb``: a private MariaDB (a site's database, issue 29); one xdist group, so
  one worker starts one server.
- ``timing``: rates, caps, holds and outages measured in seconds. Under pytest-xdist
  (``--dist loadgroup``) they share one group, so they never run beside each other.

The slow tiers go first, so the last minutes of a parallel run are not one worker
finishing a long test while the others wait. A worker lowers its own CPU priority
(nice 10) at its first test that is not ``timing``: on two cores shared by four
workers, the tests that measure seconds then measure digest, not the other tests
(a rate test saw 564 messages in a 10-second window of 600 while kill -9 tests
ran beside it)."""

from __future__ import annotations

import os

import pytest

FOLDERS = ("unit", "integration", "acceptance")
FIRST = ("timing", "acceptance", "postfix", "thunderbird", "browser", "integration")


def _tier(item: pytest.Item) -> int:
    for rank, name in enumerate(FIRST):
        if item.get_closest_marker(name):
            return rank
    return len(FIRST)


# Before pytest-xdist reads the groups off the markers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDERS:
            item.add_marker(folder)
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker("browser")
        if item.get_closest_marker("timing"):
            item.add_marker(pytest.mark.xdist_group("timing"))
        elif item.get_closest_marker("mariadb"):
            item.add_marker(pytest.mark.xdist_group("mariadb"))  # one private server
    items.sort(key=_tier)  # stable: the files' own order within a tier


def lost_group(item: pytest.Item) -> bool:
    """A test of a group that pytest-xdist did not group: it writes each test's group
    into the node id its scheduler reads ("…::test@timing"), and pytest 9.2 with xdist
    3.8 silently stopped that (pytest-xdist#1386)."""
    if not getattr(item.config.option, "loadgroup", False):
        return False
    return (
        bool(item.get_closest_marker("xdist_group")) and "@" not in item.nodeid.rpartition("]")[2]
    )


_yielded = False  # this worker has given the CPU's first call to the timing tests


# First, before the test's fixtures start anything (Chromium, Thunderbird, servers):
# what they start inherits the lower priority.
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _yielded
    if lost_group(item):  # a test that must not run beside the others would
        pytest.fail(
            "pytest-xdist did not group this test (--dist loadgroup): this pytest and "
            "pytest-xdist do not work together (pytest-xdist#1386); see pyproject.toml",
            pytrace=False,
        )
    if _yielded or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if not item.get_closest_marker("timing"):
        os.nice(10)  # inherited by the processes its tests start
        _yielded = True
