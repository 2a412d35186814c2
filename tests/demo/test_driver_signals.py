"""cutover_demo.new_backend.driver_signals: the first stop signal is recorded and wakes the
traffic loop; later ones are ignored; the previous handlers come back."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from cutover_demo.new_backend.driver_signals import DemoStopped, StopSignals


def test_the_first_signal_is_recorded_and_the_handlers_restored() -> None:
    before = signal.getsignal(signal.SIGHUP)
    with StopSignals() as stop:
        stop.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the first one counts
        assert stop.received == "SIGHUP"
        with pytest.raises(DemoStopped, match="SIGHUP"):
            stop.check()
    assert signal.getsignal(signal.SIGHUP) is before


def test_a_signal_wakes_the_running_loop() -> None:
    async def wait_for_a_signal(stop: StopSignals) -> bool:
        with stop.waking() as stopped:
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), 5)
            return stopped.is_set()

    with StopSignals() as stop:
        assert asyncio.run(wait_for_a_signal(stop))
        assert stop.received == "SIGTERM"


def test_a_signal_before_the_loop_sets_the_event_at_once() -> None:
    async def already_set(stop: StopSignals) -> bool:
        with stop.waking() as stopped:
            return stopped.is_set()

    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert asyncio.run(already_set(stop))
