"""The paused-domain gauge: set while held, removed after, under the label the
domain was counted with (a domain past the label cap is "other")."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from digest.observe import metrics


def paused(label: str) -> float | None:
    return REGISTRY.get_sample_value("digest_domain_paused", {"domain": label})


def test_a_paused_domain_shows_then_goes_even_past_the_label_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "domain_label", metrics.DomainLabels(cap=1))
    metrics.show_paused(["first.example", "second.example"])
    assert paused("first.example") == 1 and paused("other") == 1
    metrics.show_paused(["first.example"])
    assert paused("first.example") == 1 and paused("other") is None
    metrics.show_paused([])
    assert paused("first.example") is None
