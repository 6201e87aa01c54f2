"""The file-descriptor limit (ingress/descriptors.py): the soft limit raised to the hard one at start, left alone
when the platform refuses, and a warning when even the hard limit is low (each client connection takes one).
`resource` is a stand-in: the test process's own limit is not changed."""

from __future__ import annotations

import logging
import resource as real_resource
from types import SimpleNamespace

import pytest

from qwen_gateway.ingress import descriptors


def stand_in(monkeypatch, soft: int, hard: int, refuse: Exception | None = None) -> list:
    calls: list = []

    def setrlimit(which, limits):
        if refuse is not None:
            raise refuse
        calls.append((which, limits))
    monkeypatch.setattr(descriptors, "resource", SimpleNamespace(
        RLIMIT_NOFILE=real_resource.RLIMIT_NOFILE, RLIM_INFINITY=real_resource.RLIM_INFINITY,
        getrlimit=lambda which: (soft, hard), setrlimit=setrlimit))
    return calls


def test_the_soft_limit_is_raised_to_the_hard_one(monkeypatch, caplog):
    calls = stand_in(monkeypatch, 1024, 524_288)
    with caplog.at_level(logging.DEBUG, "qwen"):
        descriptors.raise_soft_limit()
    assert calls == [(real_resource.RLIMIT_NOFILE, (524_288, 524_288))]
    assert caplog.messages == ["qwen: open files limit raised from 1024 to 524288 (each client connection takes one)"]


def test_equal_limits_are_left_as_they_are(monkeypatch, caplog):
    calls = stand_in(monkeypatch, 65_536, 65_536)
    with caplog.at_level(logging.DEBUG, "qwen"):
        descriptors.raise_soft_limit()
    assert calls == [] and caplog.messages == []


def test_an_unlimited_hard_limit_is_not_asked_for(monkeypatch):
    calls = stand_in(monkeypatch, 1024, real_resource.RLIM_INFINITY)
    descriptors.raise_soft_limit()
    assert calls == []


@pytest.mark.parametrize("error", [ValueError("not allowed"), OSError(1, "Operation not permitted")])
def test_a_platform_that_refuses_is_left_alone_quietly(monkeypatch, caplog, error):
    stand_in(monkeypatch, 256, 1024, refuse=error)
    with caplog.at_level(logging.DEBUG, "qwen"):
        descriptors.raise_soft_limit()  # no exception, no warning: the gateway starts anyway
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert caplog.messages[0].startswith("qwen: open files limit left as it is: ")


def test_a_low_hard_limit_is_warned_about_with_what_to_do(monkeypatch, caplog):
    stand_in(monkeypatch, 1024, 2048)
    with caplog.at_level(logging.WARNING, "qwen"):
        descriptors.raise_soft_limit()
    assert caplog.messages == ["qwen: only 2048 open files allowed (hard limit): each client connection takes one. "
                               "Raise it: `ulimit -Hn` / LimitNOFILE= in the service unit."]


def test_enough_after_raising_is_not_warned_about(monkeypatch, caplog):
    stand_in(monkeypatch, 1024, descriptors.LOW)
    with caplog.at_level(logging.WARNING, "qwen"):
        descriptors.raise_soft_limit()
    assert caplog.messages == []
