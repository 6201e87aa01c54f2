"""The pinned turns of web accounts at run time (pins.py keeps them): which request continues which chat, one
generation per chat at a time, and the chat's new last response read from the answer's frames.

Qwen Chat refuses a second generation on a chat while one runs ("The chat is in progress!", §1.12), so a turn on a
pinned chat holds that chat's asyncio lock from `prepare` until its answer is closed; a second request on the same
pin queues for at most `wait` seconds (then a 429), and, once the first is done, finds the pin moved on: its
history no longer continues it, so it goes to a new chat. The plan travels in the upstream body under `_pin`
(never sent: upstream.wire drops it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping

from ...errors import GatewayError
from ...interfaces import UpstreamAnswer
from . import request
from .pins import PinStore, follow_up, pin_key, transcript_digest

PLAN = "_pin"


class Pinning:
    """`mode`: qwen_web_pin (`user`: the OpenAI `user` field names the conversation); `wait`: seconds a turn
    waits for its chat's previous turn."""

    def __init__(self, store: PinStore, mode: str = "user", wait: float = 120.0) -> None:
        self.store = store
        self.mode = mode
        self.wait = wait
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # chat id -> (lock, turns holding or waiting)

    def plan(self, chat: dict, account: str, model: str) -> dict | None:
        """What the turn may do with a pin (None: the request names no conversation)."""
        session = chat.get("user") if self.mode == "user" else None
        if not isinstance(session, str) or not session:
            return None
        key = pin_key(account, session, model)
        count = len([m for m in chat.get("messages") or [] if isinstance(m, dict)])
        plan: dict = {"key": key, "digest": transcript_digest(chat, count), "count": count, "hit": None}
        pin = self.store.get(key)
        new = follow_up(chat, pin) if pin is not None else None
        if pin is not None and new is not None:
            plan["hit"] = {"chat_id": pin.chat_id, "response_id": pin.response_id,
                           "content": request.follow_up_text(new, pin.count + 1)}
        return plan

    async def claim(self, body: dict) -> dict | None:
        """The body continuing its pinned chat, with that chat's lock held; None: a new chat instead (the pin
        moved on while the turn waited)."""
        plan = body[PLAN]
        hit = plan["hit"]
        chat_id = hit["chat_id"]
        lock, users = self._locks.get(chat_id) or (asyncio.Lock(), 0)
        self._locks[chat_id] = (lock, users + 1)
        try:
            await asyncio.wait_for(lock.acquire(), self.wait)
        except BaseException as e:
            self._unuse(chat_id)
            if not isinstance(e, TimeoutError):
                raise
            raise GatewayError(429, f"The pinned Qwen Chat conversation is still answering an earlier request "
                                    f"(waited {self.wait:g} s); try again when it is done.",
                               type="requests", code="conversation_busy", headers={"retry-after": "5"}) from None
        pin = self.store.get(plan["key"])
        if pin is None or (pin.chat_id, pin.response_id) != (chat_id, hit["response_id"]):
            self._release(chat_id)
            return None
        return request.continued({**body, PLAN: {**plan, "held": chat_id}}, chat_id, hit["response_id"],
                                 hit["content"])

    def abandoned(self, body: dict) -> None:
        """The completion was never sent: the chat is free again."""
        held = (body.get(PLAN) or {}).get("held")
        if held:
            self._release(held)

    def watch(self, body: dict, resp: UpstreamAnswer) -> UpstreamAnswer:
        return PinnedAnswer(resp, body, self)

    def ended(self, body: dict, response_id: str | None, finished: bool) -> None:
        """The answer was closed: pin the chat at its new last response, or forget a chain gone uncertain."""
        plan = body[PLAN]
        chat_id = str(body.get("chat_id") or "")
        try:
            if finished and response_id and chat_id:
                self.store.put(plan["key"], chat_id, response_id, plan["digest"], plan["count"])
            elif plan.get("held"):
                self.store.drop(plan["key"])  # a refused or broken turn: its parent chain is no longer known
        finally:
            if plan.get("held"):
                self._release(plan["held"])

    def _release(self, chat_id: str) -> None:
        lock, _ = self._locks[chat_id]
        lock.release()
        self._unuse(chat_id)

    def _unuse(self, chat_id: str) -> None:
        lock, users = self._locks[chat_id]
        if users <= 1:
            del self._locks[chat_id]
        else:
            self._locks[chat_id] = (lock, users - 1)


class PinnedAnswer:
    """The engine's answer, read through: the frames' response id and end noted, the turn ended at close."""

    def __init__(self, resp: UpstreamAnswer, body: dict, pinning: Pinning) -> None:
        self.resp, self.body, self.pinning = resp, body, pinning
        self.response_id: str | None = None
        self.finished = False
        self.closed = False
        self._rest = b""

    @property
    def status_code(self) -> int:
        return self.resp.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self.resp.headers

    async def aread(self) -> bytes:
        raw = await self.resp.aread()
        self._scan(raw + b"\n")
        return raw

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        async for data in self.resp.aiter_raw():
            self._scan(data)
            yield data

    async def aclose(self) -> None:
        try:
            await self.resp.aclose()
        finally:
            if not self.closed:
                self.closed = True
                self.pinning.ended(self.body, self.response_id, self.finished)

    def _scan(self, data: bytes) -> None:
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self._frame(line[5:].strip())

    def _frame(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        created = event.get("response.created")
        if isinstance(created, dict) and isinstance(created.get("response_id"), str):
            self.response_id = self.response_id or created["response_id"]
        choices = event.get("choices")
        delta = choices[0].get("delta") if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
            else None
        if isinstance(delta, dict) and delta.get("phase") == "answer" and delta.get("status") == "finished":
            self.finished = True
