"""Shared fixtures: a real broker on a free loopback port, and waiting without sleeps."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

from env.broker import Broker


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        event.wait(0.005)


@pytest.fixture
def broker():
    """Our broker on 127.0.0.1 with a free port, stopped after the test."""
    instance = Broker("127.0.0.1", 0).start()
    yield instance
    instance.stop()
