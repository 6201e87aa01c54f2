"""The emulator's memory: credentials, device logins, switches, queued faults, counters, request log."""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
import time
from collections import deque

from . import faults
from .cache import PromptCache
from .limits import Limits
from .batches import BatchStore
from .engine import Engine
from .files import FileStore
from .responses_store import ResponseStore
from .vllm_prompt import PrefixCache

SEED_LIFETIME = 10 * 365 * 86400  # command-line tokens never expire in practice

DEFAULT_SWITCHES = {
    # chat answers
    "reply": None,  # fixed answer text; default "Echo: <last user text>"
    "deltas": None,  # exact content deltas of the answer, repeats kept (R8: "哈哈", "哈哈", "，好的")
    "finish_reason": None,  # override the answer's finish_reason (e.g. "content_filter", "length")
    "denied_models": [],  # models this account has not enabled: 403 AccessDenied.Unpurchased (R7)
    "stream_only_models": [],  # more models that answer streams only (besides rules.STREAM_ONLY)
    # the models (catalogue.py reads the gateway's models/catalogue.toml; these add to it)
    "listed_models": None,  # GET /models lists these (what a workspace enabled), else every model it serves
    # key -> the models it unlocks (Token Plan Personal: 6 of 15): its GET /models lists them, and a chat request
    # for another model is refused 403 AccessDenied.Unpurchased (pi PR #6858)
    "key_models": None,
    # Model Studio's own list with prices, GET /api/v1/models (model_list.py): None, as the catalogue says; or drift,
    # any of {"unreadable": 500 | 503 | 401 | 404 (that status, DashScope's native error body) | "garbage" (200,
    # not JSON) | "hang" (never answered), or {key: one of those}} with {"compatible": true} (the key's GET /models
    # fails the same way), {"override": {model: {"model_info": {...} merged key by key, any other field ("prices": [served
    # tiers], "published_time") replaced whole, a null removing the field}}}, {"omit": [model, ...]} (left out for
    # every key), {"billing": {key: "payg:cn"}} (whose prices a key reads; default "payg:intl"). The list only: chat
    # still serves an omitted model (what chat refuses stays `key_models`'s, `denied_models`' and the rules')
    "model_list": None,
    "extra_models": [],  # model ids the catalogue does not name, answered as plain hybrid models without a cap
    "model_caps": {},  # model -> its output cap (R4), over the catalogue's `output` or where it has none
    "legacy_max_tokens": False,  # take `max_tokens` on the OpenAI-compatible chat API (deprecated since 2026-04-20)
    "today": None,  # the emulator's UTC date (YYYY-MM-DD) for the catalogue's `retires` (None: the real one)
    "reasoning": True,  # reasoning_content before the answer (request enable_thinking=false turns it off)
    "reasoning_tokens": None,  # the reasoning's length in the emulator's tokens (None: "Thinking about it.", 5)
    "tool_calls": "asked",  # tools.py: "asked" (a call only when the prompt names a tool or tool_choice forces
    # one), "always" (whenever tools are offered: the first, then the next), "never"
    "tool_arguments": None,  # JSON object for tool-call arguments (default: the tool's required fields filled)
    "tool_calls_count": 1,
    "usage_cached_tokens": 0,
    "usage_top_level_cached": False,
    # streaming
    "chunk_count": 0,  # content pieces; 0: one per word
    "gap_ms": 0,
    "first_byte_delay_ms": 0,
    "cumulative_deltas": False,
    "usage_in_finish_chunk": False,
    "tool_index_collision": False,
    "split_tool_name": False,
    "duplicate_finish": False,
    "think_leak": False,
    "split_writes": False,
    "stall_seconds": 30,
    # the model's input limit in the emulator's tokens (0: none): longer prompts get Qwen's context 400
    "context_limit": 0,
    # limits per Alibaba Cloud account, summed over its keys (limits.py; 0: off)
    "key_accounts": {},  # key -> its Alibaba Cloud account's name (default: each key an account of its own)
    "rpm_limit": 0,
    "daily_limit": 0,
    "tpm_limit": 0,
    "burst_limit": 0,
    "concurrency_limit": 0,
    "plan_limits": {},  # a Coding Plan's requests per window: {"5h": N, "week": N, "month": N}
    "plan_month_day": 1,  # the day of the month its subscription started (the monthly window's start)
    "coding_plan_agents_only": False,  # the plan's paths refuse clients that are not coding agents (plans.py)
    # OAuth
    "expires_in": 3600,  # access tokens from the device and refresh grants
    "device_expires_in": 1800,
    "interval": None,  # omitted from the device-code reply unless set
    "auto_approve": False,
    "slow_down": 0,  # answer slow_down to this many polls
    "slow_down_status": 429,  # qwen-code expects 429, RFC 8628 says 400
    "rotate_refresh_token": True,
    "refresh_omit_resource_url": False,
    "refresh_fail_status": 400,
    "refresh_delay_ms": 0,
    "resource_url": None,  # None: this server's http:// URL; "none": omitted
    # Model Studio's Responses API (responses.py) and its session cache (cache.py): off, a region or model without them
    "responses_api": True,
    "session_cache": True,
    # Model Studio's Files and Batch APIs (files.py, batches.py): their documented limits, scaled down by tests
    "batch_api": True,
    "files_max_count": 10_000,
    "files_max_total_bytes": 100 << 30,
    "batch_file_max_bytes": 500 << 20,
    "batch_max_lines": 50_000,
    "batch_line_max_bytes": 6 << 20,
    "batch_context_limit": 256 * 1024,  # tokens a batched request's prompt may hold (the emulator's count)
    "batch_lines_per_step": 0,  # requests run in one step of a batch (0: all)
    "batch_steps_per_poll": 0,  # steps a batch moves at each GET of it (0: only /_emulator/batches moves it)
    "batch_failed_in_output": False,  # failed requests in the results file, request_counts.failed 0 (observed)
    # the vLLM mode (vllm.py): the reasoning's name in messages and deltas — "reasoning_content" (v0.11.0, the
    # release played), "both" (from v0.11.1: `reasoning`, with reasoning_content kept as a deprecated copy),
    # "reasoning" (the later releases that dropped reasoning_content)
    "vllm_reasoning_field": "reasoning_content",
    # housekeeping
    "request_log_limit": 1000,  # oldest entries dropped beyond this (benchmarks send many large bodies)
}


BILLED_KEPT = 100  # requests' usages kept per account (stats' `billed`)


def short(token: str) -> str:
    """How a token appears in stats, and a key's account unless `key_accounts` names it: never in full, and two
    tokens as one name only by a 1-in-4-billion chance (a digest after the first characters, which seeded keys
    share: `tok-` and hex)."""
    return f"{token[:6]}…{hashlib.sha256(token.encode()).hexdigest()[:8]}"


class State:
    def __init__(self, url: str = "", api_keys=(), seed_tokens=(), vllm=None) -> None:
        self.lock = threading.RLock()
        self.url = url
        self.vllm = vllm  # vllm.Config: the server plays vLLM (--serve vllm) or SGLang, not Qwen's services
        # the vLLM/SGLang engine: batch, pace, alive, metrics (engine.py)
        self.engine = Engine(vllm.max_num_seqs, vllm.token_delay) if vllm is not None else Engine(256, 0.0)
        self.responses_store: dict[str, dict] = {}  # vLLM's in-memory Responses store (--responses-store)
        self.seeds = (tuple(api_keys), tuple(seed_tokens))
        self.tokens: dict[str, dict] = {}  # access token -> {kind, expires_at, refresh_token}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> access token it came with
        self.devices: dict[str, dict] = {}  # device_code -> {user_code, challenge, status, expires_at}
        self.reset(tokens=True)

    def reset(self, *, tokens: bool = False) -> None:
        with self.lock:
            self.switches = copy.deepcopy(DEFAULT_SWITCHES)
            self.faults: list[dict] = []
            self.requests: deque[dict] = deque()
            self.cache = PromptCache()  # explicit prompt cache (cache_control), per credential
            self.responses = ResponseStore()  # stored Responses API answers, per account (seven days)
            self.files = FileStore()  # the Files API's files, per account
            self.batches = BatchStore()  # the Batch API's batches, per account
            self.vllm_cache = PrefixCache()  # the vLLM mode's automatic prefix cache (vllm_prompt.py)
            if hasattr(self, "engine"):
                self.engine.reset()
                self.responses_store.clear()
            self.stats = {"chat_requests": 0, "embedding_requests": 0, "refresh_calls": 0, "token_calls": 0,
                          "device_code_calls": 0, "abandoned": 0,
                          "responses_requests": 0, "batch_api_requests": 0,
                          "batch_lines": {"completed": 0, "failed": 0}, "per_token": {}, "per_account": {}, "billed": {},
                          "last_stream_bytes": 0}
            self.limits = Limits()
            if tokens:
                self.tokens.clear()
                self.refresh_tokens.clear()
                self.devices.clear()
                keys, seeds = self.seeds
                for key in keys:
                    self.issue("key", access_token=key)
                for token in seeds:
                    self.issue("oauth", SEED_LIFETIME, access_token=token)

    def snapshot(self) -> dict:
        with self.lock:
            return copy.deepcopy(self.switches)

    # ---- credentials -----------------------------------------------------------------------

    def issue(self, kind: str = "oauth", expires_in: float | None = None, access_token: str | None = None,
              refresh_token: str | None = None) -> dict:
        with self.lock:
            access = access_token or f"emu-at-{secrets.token_hex(16)}"
            expires_in = self.switches["expires_in"] if expires_in is None else expires_in
            rt = refresh_token or (f"emu-rt-{secrets.token_hex(16)}" if kind == "oauth" else None)
            expires_at = time.time() + expires_in
            self.tokens[access] = {"kind": kind, "expires_at": expires_at, "refresh_token": rt}
            if rt:
                self.refresh_tokens[rt] = access
            return {"access_token": access, "refresh_token": rt, "token_type": "Bearer", "kind": kind,
                    "expires_in": expires_in, "expiry_date": int(expires_at * 1000)}

    def valid(self, token: str) -> bool:
        with self.lock:
            t = self.tokens.get(token)
            return bool(t) and (t["kind"] == "key" or t["expires_at"] > time.time())

    # ---- faults, counters, log ---------------------------------------------------------------

    def take_fault(self, kinds: tuple[str, ...], token: str | None, path: str) -> dict | None:
        """The first queued fault of these kinds that matches the request; consumed."""
        with self.lock:
            return faults.take(self.faults, lambda f: f["kind"] in kinds and (not f.get("token") or f["token"] == token)
                               and (not f.get("path") or f["path"] in path))

    def account_of(self, token: str) -> str:
        """The Alibaba Cloud account a key belongs to (`key_accounts`), as stats name it (never the key)."""
        return str(self.switches["key_accounts"].get(token) or short(token))

    def owner(self, token: str) -> str:
        """Who owns stored objects (responses, files, batches): the key's account (`key_accounts`), else the key
        itself. Unlike `account_of`, never a shortened key: two keys sharing a prefix are two accounts."""
        return str(self.switches["key_accounts"].get(token) or token)

    def count(self, token: str, tokens: int = 0, *, path: str = "") -> str | None:
        """Counts an API request against its account's limits (limits.py): the limit that refuses it, or None."""
        with self.lock:
            now = time.time()
            account = self.account_of(token)
            refused = self.limits.count(account, self.switches, tokens, now,
                                        plan_path=not path.startswith("/compatible-mode/"))
            if refused is None:
                per = self.stats["per_token"].setdefault(short(token), {"requests": 0})
                per.update(requests=per["requests"] + 1, last_minute=self.limits.last_minute(account, now),
                           today=self.limits.today(account, now))
            return refused

    def enter(self, token: str) -> bool:
        """A chat request starts (False: `concurrency_limit` of its account's requests are in flight)."""
        with self.lock:
            return self.limits.enter(self.account_of(token), int(self.switches["concurrency_limit"]))

    def leave(self, token: str) -> None:
        with self.lock:
            self.limits.leave(self.account_of(token))

    def served(self, token: str, usage: dict) -> None:
        """An answer's usage, per account: what its prompt cache saved (`cache_hits`: answers with cached tokens),
        and each request's usage as billed when its prompt was taken (stats' `billed`, per account, the last
        BILLED_KEPT: a stream cut afterwards is billed all the same), what a test prices Qwen's bill from."""
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or usage.get("cached_tokens") or 0)
        with self.lock:
            per = self.stats["per_account"].setdefault(self.account_of(token), {
                "requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "cache_hits": 0})
            per["requests"] += 1
            per["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            per["cached_tokens"] += cached
            per["cache_hits"] += cached > 0
            billed = self.stats["billed"].setdefault(self.account_of(token), [])
            billed.append(copy.deepcopy(usage))
            del billed[:-BILLED_KEPT]

    def streamed(self, size: int) -> None:
        """A stream's body ended whole after `size` bytes (a test cuts the next one at any of them)."""
        with self.lock:
            self.stats["last_stream_bytes"] = size

    def bump(self, *names: str) -> None:
        with self.lock:
            for name in names:
                self.stats[name] += 1

    def log(self, entry: dict) -> None:
        with self.lock:
            self.requests.append(entry)
            while len(self.requests) > max(1, int(self.switches["request_log_limit"])):
                self.requests.popleft()
