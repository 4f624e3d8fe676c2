"""dcrond raises its soft limit of open files toward what its capacity needs."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from libdcron import daemon
from libdcron.daemon import FILES_BASE, FILES_PER_RUN, raise_open_files


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_soft_limit_is_raised_for_the_capacity(limits: tuple[int, int]) -> None:
    _, hard = limits
    need = FILES_BASE + FILES_PER_RUN * 500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"this machine's hard limit of open files ({hard}) is below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    assert raise_open_files(500) == (1024, need)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (need, hard)
    assert raise_open_files(4) == (need, need), "never lowered"


def test_a_hard_limit_below_the_need_is_reached_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(daemon.resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(daemon.resource, "setrlimit", lambda _, value: set_to.append(value))
    with caplog.at_level(logging.WARNING, logger="dcrond"):
        assert raise_open_files(2000) == (1024, 4096)
    assert set_to == [(4096, 4096)]
    assert "--capacity 2000 needs about 9024 open files but the hard limit is 4096" in caplog.text


def test_a_refused_raise_is_said_and_the_node_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(_: int, value: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(daemon.resource, "getrlimit", lambda _: (1024, 1 << 20))
    monkeypatch.setattr(daemon.resource, "setrlimit", refuse)
    with caplog.at_level(logging.WARNING, logger="dcrond"):
        assert raise_open_files(1000) == (1024, 1024)
    assert "cannot raise the open files limit from 1024 to 5024" in caplog.text
