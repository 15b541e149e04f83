"""Phase timings: what evaluate logs and records per phase."""

from __future__ import annotations

import logging
import time

import pytest

from genduel import timings


def test_a_phase_logs_its_time_adds_up_repeats_and_syncs_around_the_clock(caplog):
    seconds: dict[str, float] = {}
    calls = []
    caplog.set_level(logging.INFO, "genduel.timings")
    with timings.phase("bounds", seconds, sync=lambda: calls.append(time.perf_counter())):
        time.sleep(0.05)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.05  # before and after the block
    assert 0.05 <= seconds["bounds"] < 1.0
    first = seconds["bounds"]
    with timings.phase("bounds", seconds):
        time.sleep(0.02)
    assert seconds["bounds"] >= first + 0.02  # the same phase again: added
    assert "phase bounds:" in caplog.text


def test_a_failed_phase_still_records_its_time():
    seconds: dict[str, float] = {}
    with pytest.raises(ValueError), timings.phase("studies", seconds):
        raise ValueError("boom")
    assert "studies" in seconds
