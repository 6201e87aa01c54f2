"""A state-folder gateway told of qwen-keys' changes (tenancy/source_folder.py): its socket private to the
folder's owner, each notice answered once the keys are applied, a dead gateway's socket removed, a silent one
named, a long folder path reached all the same, a folder it cannot use said once; the socket gone at stop.
tests/e2e/test_e2e_keys_revoke.py tells real gateways with the real qwen-keys."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat

import pytest

from qwen_gateway.tenancy.source_folder import GATEWAYS, tell_gateways, told


async def listening(state, apply) -> asyncio.Task:
    task = asyncio.create_task(told(state, apply))
    path = state / GATEWAYS / f"{os.getpid()}.sock"
    for _ in range(500):
        if path.exists() or task.done():
            break
        await asyncio.sleep(0.002)
    return task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("deep", [False, True], ids=["short", "past-a-socket-address"])
async def test_a_notice_is_answered_once_the_keys_are_applied(tmp_path, deep):
    state = tmp_path / ("x" * 90 if deep else "state") / "state"
    applied = []

    async def apply():
        await asyncio.sleep(0.05)  # a read of the keys file
        applied.append(True)

    task = await listening(state, apply)
    sock = state / GATEWAYS / f"{os.getpid()}.sock"
    assert stat.S_IMODE((state / GATEWAYS).stat().st_mode) == 0o700 and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert await asyncio.to_thread(tell_gateways, state, 5) == (1, []) and applied == [True]
    assert await asyncio.to_thread(tell_gateways, state, 5) == (1, []) and len(applied) == 2
    await stop(task)
    assert not sock.exists()  # a gateway that stops takes its socket with it
    assert await asyncio.to_thread(tell_gateways, state, 5) == (0, [])


async def test_a_dead_gateways_socket_is_removed_and_a_silent_one_named(tmp_path):
    state = tmp_path / "state"
    (state / GATEWAYS).mkdir(parents=True)
    dead = state / GATEWAYS / "999999.sock"
    with socket.socket(socket.AF_UNIX) as s:  # bound, then its process gone: nobody listens
        s.bind(str(dead))
    never = asyncio.Event()
    task = await listening(state, never.wait)  # a gateway that never finishes applying (stopped, hung)
    assert await asyncio.to_thread(tell_gateways, state, 0.3) == (0, [str(os.getpid())])
    assert not dead.exists()
    await stop(task)


async def test_a_folder_it_cannot_use_is_said_once_and_the_gateway_goes_on(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    caplog.set_level(logging.WARNING, "qwen")
    await asyncio.wait_for(told(blocker, asyncio.sleep), 5)  # returns: the gateway looks every second instead
    assert "could not listen for qwen-keys' notices" in caplog.text and "within a second instead" in caplog.text
