"""The emulator's memory: credentials, switches, queued faults, counters and the request log."""

from __future__ import annotations

import copy
import secrets
import threading
import time

DEFAULT_SWITCHES = {
    "reply": None,  # fixed answer text; default "Echo: <last user text>"
    "reasoning": True,  # send reasoning_content before the answer
    "tool_arguments": None,  # JSON object for tool calls
    "tool_calls_count": 1,
    "gap_ms": 0,
    "first_byte_delay_ms": 0,
    "chunk_count": 0,  # 0: one chunk per word
    "cumulative_deltas": False,
    "usage_in_finish_chunk": False,
    "usage_top_level_cached": False,
    "usage_cached_tokens": 0,
    "tool_index_collision": False,
    "split_tool_name": False,
    "duplicate_finish": False,
    "think_leak": False,
    "split_writes": False,
    "stall_seconds": 30,
    "rpm_limit": 0,
    "daily_limit": 0,
    # OAuth
    "expires_in": 3600,
    "device_expires_in": 1800,
    "interval": None,
    "auto_approve": False,
    "slow_down": 0,  # answer slow_down to this many polls
    "slow_down_status": 429,
    "rotate_refresh_token": True,
    "refresh_omit_resource_url": False,
    "refresh_fail_status": 400,
    "refresh_delay_ms": 0,
    "resource_url": None,  # default: this server's http URL; "none": omit
}


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.url = ""
        self.tokens: dict[str, dict] = {}  # access token -> {kind, expires_at, refresh_token}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> access token
        self.devices: dict[str, dict] = {}  # device_code -> {user_code, challenge, status}
        self.reset(tokens=False)

    def reset(self, *, tokens: bool) -> None:
        with self.lock:
            self.switches = copy.deepcopy(DEFAULT_SWITCHES)
            self.faults: list[dict] = []
            self.requests: list[dict] = []
            self.stats = {"chat_requests": 0, "embedding_requests": 0, "refresh_calls": 0, "token_calls": 0,
                          "device_code_calls": 0, "per_token": {}}
            self.minute: dict[str, list[float]] = {}
            if tokens:
                self.tokens.clear()
                self.refresh_tokens.clear()
                self.devices.clear()

    def issue(self, kind: str = "oauth", expires_in: float | None = None, access_token: str | None = None,
              refresh_token: str | None = None) -> dict:
        with self.lock:
            access = access_token or f"emu-at-{secrets.token_hex(16)}"
            expires_in = self.switches["expires_in"] if expires_in is None else expires_in
            rt = refresh_token or (f"emu-rt-{secrets.token_hex(16)}" if kind == "oauth" else None)
            self.tokens[access] = {"kind": kind, "expires_at": time.time() + expires_in, "refresh_token": rt}
            if rt:
                self.refresh_tokens[rt] = access
            return {"access_token": access, "refresh_token": rt, "expires_in": expires_in,
                    "expiry_date": int((time.time() + expires_in) * 1000)}

    def valid(self, token: str) -> bool:
        with self.lock:
            t = self.tokens.get(token)
            return bool(t) and (t["kind"] == "key" or t["expires_at"] > time.time())

    def take_fault(self, kinds: tuple[str, ...] | None, token: str | None, path: str) -> dict | None:
        """The first queued fault that matches this request (consumed)."""
        with self.lock:
            for f in self.faults:
                if kinds is not None and f["kind"] not in kinds:
                    continue
                if kinds is None and f["kind"].startswith("oauth"):
                    continue
                if f.get("token") and f["token"] != token:
                    continue
                if f.get("path") and f["path"] not in path:
                    continue
                f["count"] = f.get("count", 1) - 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                return f
            return None

    def count(self, token: str) -> str | None:
        """Counts a chat request; returns "throttle"/"quota" when a configured limit is hit."""
        with self.lock:
            key = token[:6] + "…"
            per = self.stats["per_token"].setdefault(key, {"requests": 0})
            now = time.time()
            recent = [t for t in self.minute.get(token, []) if now - t < 60]
            if self.switches["rpm_limit"] and len(recent) >= self.switches["rpm_limit"]:
                return "throttle"
            if self.switches["daily_limit"] and per["requests"] >= self.switches["daily_limit"]:
                return "quota"
            recent.append(now)
            self.minute[token] = recent
            per["requests"] += 1
            return None
