"""vLLM mode (`qwen_emulator.py --serve vllm`): a self-hosted vLLM OpenAI-compatible server serving open Qwen weights,
by default as vLLM v0.11.0 (2025-10-02) answers — its source read from the release's wheel; paths below are the
package's — and with `--vllm-version 0.15` or later as the 2026 releases do (below).

- Routes (entrypoints/openai/api_server.py): `POST /v1/chat/completions`, `GET /v1/models`, `GET /health` (200,
  empty), `GET|POST /ping`, `GET /version` (`{"version": "0.11.0"}`); any other path 404 `{"detail": "Not Found"}`, a
  wrong method 405 `{"detail": "Method Not Allowed"}` (FastAPI's). With `--api-key`, every path starting with /v1
  needs `Authorization: Bearer <key>` (AuthenticationMiddleware; the scheme in any case): else 401
  `{"error": "Unauthorized"}`.
- Errors (protocol.py ErrorResponse/ErrorInfo): `{"error": {"message", "type", "param": null, "code": <status>}}`;
  serving_engine.create_error_response's type "BadRequestError", "NotFoundError" for an unknown model ("The model `X`
  does not exist."); request validation (the pydantic model's validators) "Bad Request" with FastAPI 0.118's message,
  the errors list's repr (api_server.validation_exception_handler); failures while rendering the prompt carry
  `f"{e} {e.__cause__}"` (serving_chat.py): the context-length refusal ends in " None", transformers' refusal of
  `continue_final_message` with the default `add_generation_prompt` (true) says its text twice.
- Context (serving_engine._validate_input): a prompt of max-model-len tokens or more, or prompt + max_completion_tokens
  (else max_tokens) above it: 400. The answer stops at the smaller of max-model-len - prompt and that cap (utils.py
  get_max_tokens): finish_reason "length".
- Fields outside ChatCompletionRequest are ignored (OpenAIBaseModel logs "The following fields were present in the
  request but ignored"); the request log names them (`ignored_fields`). `chat_template_kwargs` reaches the template.
- Tool choice (serving_chat.py): "auto" — sent, or the default when tools are given (protocol.check_tool_usage) —
  needs --enable-auto-tool-choice (which needs --tool-call-parser, cli_args.py) else 400; "none", "required" and a
  named function need neither.
- Streams: `data: <chunk>\\n\\n`, then `data: [DONE]`; usage chunk (`choices: []`) when stream_options.include_usage
  (true by default once stream_options is sent) or --enable-force-include-usage; continuous_usage_stats puts usage on
  every chunk; stream_options without stream: 400. `n` > 1 is served.
- Usage (serving_chat.py): `prompt_tokens_details` `{"cached_tokens": N}` only with --enable-prompt-tokens-details and
  a prefix-cache hit (null in a whole answer otherwise); vllm_prompt.py has the prefix cache.

The 2026 releases (`--vllm-version` 0.15 or later; `Config.modern`), as docs/emulator.md "vLLM 2026 releases" lists
them with their sources (the team's selfhosted-servers.md, vLLM's source and docs):
- reasoning under `reasoning` (message, `delta.reasoning`), never `reasoning_content` (PR #27752 renamed it, PR #33402,
  Jan 2026, removed the old name); a thinking answer cut before `</think>` is all reasoning, content null
  (qwen3_reasoning_parser); `usage.completion_tokens_details.reasoning_tokens` with a reasoning parser.
- context (vllm_rules.context_refusal): never clamped; the v0.20 wording "…you requested M output tokens and your prompt
  contains at least N input tokens…" (vllm #42474) with VLLMValidationError's "(parameter=input_tokens, value=N)" and
  `param`; from v0.30 a prompt alone over the length is "Input length (N) exceeds model's maximum context length (L)."
  (the v0.30 boundary: the release users quoted it from; the first release with it is not known).
- `thinking_token_budget` honoured only with `--reasoning-config` (docs/features/reasoning_outputs.md; the release it
  arrived in is not known: played from 0.15); `cache_salt` keys the prefix cache; `chat_template_kwargs` reach the
  template (`enable_thinking`, `preserve_thinking` with `--chat-template qwen3.6`: vllm_template.py, vllm_tools.py).
- `/health` 503 when the engine is dead, `/metrics` (Prometheus text), `--max-num-seqs` queueing and `--token-delay`
  pace: engine.py; `/v1/messages` and `/v1/responses`: vllm_native.py. `--serve sglang` shares all this (sglang.py).

Queued faults (/_emulator/fault) apply: `cut` at any byte, `stall`, `reset_midstream`, socket faults as in the
DashScope mode; an error status in vLLM's shape (type: the status phrase); `midstream504`, `error_finish` and
`nested_error` become vLLM's in-stream error (`data: {"error": {…, "type": "BadRequestError", "code": 400}}`, then
`data: [DONE]`, as its stream generator writes one); `finish_abort`, `finish_repetition` end an answer after part of
its text with that finish_reason; from 0.15 `finish_error` is vLLM's GenerationError (a 500, or an error event in a
stream), in v0.11.0 a plain finish_reason "error".
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus

from . import faults, sglang, vllm_answer, vllm_native, vllm_prompt, vllm_template
from .faults import dumps
from .vllm_rules import (AUTO_TOOLS, FIELDS, FIELDS_2026, NOT_COMPATIBLE, TEMPLATE, context_refusal, error, read_body,
                         validate)

VERSION = "0.11.0"
DEAD = "EngineCore encountered an issue. See stack trace (above) for the root cause."  # EngineDeadError's words


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


@dataclass(frozen=True)
class Config:
    """The `vllm serve` (or `sglang.launch_server`) command line the emulator plays."""
    model: str = "Qwen/Qwen3-8B"
    served: tuple[str, ...] = ()
    max_model_len: int = 40960  # Qwen3-8B's config.json max_position_embeddings
    api_keys: tuple[str, ...] = ()
    reasoning_parser: str | None = None
    auto_tools: bool = False
    tool_parser: str | None = None
    prompt_tokens_details: bool = False
    force_include_usage: bool = False
    block_size: int = 16
    prefix_caching: bool = True
    version: str = VERSION  # --vllm-version (or --sglang-version)
    template: str | None = None  # --chat-template qwen3.6 | qwen3.8 (vllm_template.py)
    reasoning_config: dict | None = field(default=None, hash=False)  # --reasoning-config: thinking_token_budget
    max_num_seqs: int = 256  # --max-num-seqs (SGLang: --max-running-requests): engine.py
    token_delay: float = 0.0  # --token-delay: seconds per generated token
    responses_store: bool = False  # --responses-store: VLLM_ENABLE_RESPONSES_API_STORE=1
    engine: str = "vllm"  # --serve sglang: "sglang" (sglang.py)
    cache_report: bool = False  # SGLang --enable-cache-report
    strict_thinking: bool = False  # SGLang --enable-strict-thinking
    metrics: bool = True  # /metrics served (SGLang only with --enable-metrics)
    default_kwargs: dict | None = field(default=None, hash=False)  # vLLM --default-chat-template-kwargs

    @property
    def names(self) -> tuple[str, ...]:
        return self.served or (self.model,)

    @property
    def sglang(self) -> bool:
        return self.engine == "sglang"

    @property
    def modern(self) -> bool:
        """A 2026 server: vLLM v0.15 or later (the first 2026 releases), or any SGLang played (0.5.x)."""
        return self.sglang or version_tuple(self.version) >= (0, 15)

    def version_at_least(self, v: tuple[int, ...]) -> bool:
        return not self.sglang and version_tuple(self.version) >= v

    def budget(self, body: dict) -> int | None:
        """The request's thinking budget, where the server enforces one: vLLM's `thinking_token_budget` with
        --reasoning-config (docs/features/reasoning_outputs.md), SGLang's `chat_template_kwargs.thinking_budget`
        with --enable-strict-thinking (its thinking_budget docs)."""
        kwargs = body.get("chat_template_kwargs") if isinstance(body.get("chat_template_kwargs"), dict) else {}
        value = kwargs.get("thinking_budget") if self.sglang and self.strict_thinking else \
            body.get("thinking_token_budget") if not self.sglang and self.reasoning_config is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _uvicorn() -> str:
    return "uvicorn"


def _key(h) -> str | None:
    """The Bearer credential as AuthenticationMiddleware.verify_token reads it (scheme in any case, not stripped)."""
    scheme, _, param = h.headers.get("Authorization", "").partition(" ")
    return param if scheme.lower() == "bearer" else None


def send_error(h, status: int, body: dict, headers: dict | None = None) -> None:
    """An error body in the server's shape: vLLM's nested one, SGLang's flat one (sglang.py)."""
    h.send_json(status, sglang.flat(body) if h.state.vllm.sglang else body, headers)


def route(h, path: str, raw: bytes, parsed) -> None:
    cfg = h.state.vllm
    h.version_string = _uvicorn  # the Server header uvicorn sends
    body = parsed if isinstance(parsed, dict) and "x-www-form-urlencoded" not in h.headers.get("Content-Type", "") \
        else None
    known = sglang.FIELDS if cfg.sglang else FIELDS_2026 if cfg.modern else FIELDS
    ignored = sorted(set(body) - known) if body is not None and path == "/v1/chat/completions" else []
    h.record(raw, parsed, extra={"ignored_fields": ignored} if ignored else None)
    if ignored and not h.server.quiet:
        h.log_message("WARNING The following fields were present in the request but ignored: %s", set(ignored))
    if path.startswith("/v1") and cfg.api_keys and _key(h) not in cfg.api_keys:
        return h.send_json(401, {"error": "Unauthorized"})
    routes = {"/health": ("GET",), "/ping": ("GET", "POST"), "/version": ("GET",), "/v1/models": ("GET",),
              "/v1/chat/completions": ("POST",)}
    if cfg.metrics and (cfg.modern or cfg.sglang):
        routes["/metrics"] = ("GET",)
    if cfg.sglang:
        routes = {k: v for k, v in routes.items() if k not in ("/ping", "/version")} | sglang.ROUTES
    if vllm_native.owns(cfg, path):  # the Anthropic Messages and Responses dialects
        return vllm_native.route(h, cfg, path, raw)
    if path not in routes:
        return h.send_json(404, {"detail": "Not Found"})
    if h.command not in routes[path]:
        return h.send_json(405, {"detail": "Method Not Allowed"}, {"Allow": ", ".join(routes[path])})
    engine = h.state.engine
    if path in ("/health", "/ping", "/health_generate"):  # vLLM: EngineDeadError -> 503 (api_server health)
        return h.send_bytes(503 if engine.dead else 200, b"", None)
    if path == "/version":
        return h.send_json(200, {"version": cfg.version})
    if path == "/metrics":
        blocks = len(h.state.vllm_cache.blocks)
        return h.send_bytes(200, engine.metrics(cfg.engine, cfg.names[0], blocks).encode(),
                            "text/plain; version=0.0.4; charset=utf-8")
    if path == "/get_model_info":
        return h.send_json(200, sglang.model_info(cfg))
    if path == "/v1/models":
        now = int(time.time())
        if cfg.sglang:
            return h.send_json(200, {"object": "list", "data": [sglang.model_card(cfg, n, now) for n in cfg.names]})
        perm = {"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission", "created": now,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False, "organization": "*",
                "group": None, "is_blocking": False}
        return h.send_json(200, {"object": "list", "data": [
            {"id": n, "object": "model", "created": now, "owned_by": "vllm", "root": cfg.model, "parent": None,
             "max_model_len": cfg.max_model_len, "permission": [perm]} for n in cfg.names]})
    _chat(h, cfg, raw)


def _fault(h, f: dict, stream: bool) -> bool:
    """A queued fault that answers before the model does, in vLLM's shapes; False: the stream plays it."""
    kind = f["kind"]
    if kind in faults.IMMEDIATE or kind in ("arrears400", "echo_header400"):
        status, said = faults.IMMEDIATE.get(kind, (400, faults.arrears_400()))
        text = h.headers.get(str(f.get("header") or "User-Agent"), "") if kind == "echo_header400" else \
            str((said.get("error") or {}).get("message") or said)
        extra = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else None
        send_error(h, status, error(str(f.get("message") or text), HTTPStatus(status).phrase, status), extra)
        return True
    if kind == "auth401":
        h.send_json(401, {"error": "Unauthorized"})
        return True
    if kind in faults.FINISHES:
        return False
    return h.fault_answered(f, stream)


def _chat(h, cfg: Config, raw: bytes) -> None:
    h.state.bump("chat_requests")
    fault = h.state.take_fault(faults.API_FAULTS, _key(h), h.path)
    data, bad = read_body(h.headers.get("Content-Type", ""), raw)
    stream = isinstance(data, dict) and data.get("stream") is True
    if fault and _fault(h, fault, stream):
        return
    problem = bad or validate(data) or prepare(h, cfg, data)
    if problem:
        return send_error(h, *problem)
    kwargs = data.get("chat_template_kwargs") if isinstance(data.get("chat_template_kwargs"), dict) else {}
    toks = vllm_prompt.tokens(vllm_prompt.render(data, kwargs.get("enable_thinking") is False))
    cap = data.get("max_completion_tokens") or data.get("max_tokens")
    refused = (sglang.context_refusal if cfg.sglang else context_refusal)(cfg, len(toks), cap)
    if refused:
        return send_error(h, 400, refused)
    with h.state.engine.slot(h.server.stopping):
        _answer(h, cfg, data, toks, stream, fault)


def prepare(h, cfg: Config, data: dict) -> tuple[int, dict] | None:
    """What the server refuses in a valid chat request before it renders the prompt (the Messages and Responses
    routes, vllm_native.py, go through it too), or None. The server's --default-chat-template-kwargs are merged
    under the request's own `chat_template_kwargs` here (the request's win)."""
    if cfg.default_kwargs:
        own = data.get("chat_template_kwargs") if isinstance(data.get("chat_template_kwargs"), dict) else {}
        data["chat_template_kwargs"] = {**cfg.default_kwargs, **own}
    if data.get("model") and data["model"] not in cfg.names and not cfg.sglang:  # SGLang serves any name
        return 404, error(f"The model `{data['model']}` does not exist.", "NotFoundError", 404)
    if data.get("tool_choice") == "auto" and not cfg.auto_tools and not cfg.sglang:
        return 400, error(AUTO_TOOLS)
    if data.get("chat_template") is not None or (data.get("chat_template_kwargs") or {}).get("chat_template"):
        return 400, error(TEMPLATE)
    if data.get("continue_final_message") and data.get("add_generation_prompt", True):
        return 400, error(f"{NOT_COMPATIBLE} {NOT_COMPATIBLE}")  # transformers', raised from itself
    said = vllm_template.refusal(data["messages"]) if cfg.template else None
    if said:  # a jinja2 TemplateError: 400 BadRequestError, the template's words
        return 400, error(said)
    if not data["messages"]:  # Qwen3's template reads messages[0]: jinja2's UndefinedError, raised from itself
        return 400, error("list object has no element 0 list object has no element 0")
    if h.state.engine.dead:
        return 500, error(DEAD, "InternalServerError", 500)
    return None


def _answer(h, cfg: Config, data: dict, toks: list[str], stream: bool, fault: dict | None) -> None:
    sw = h.state.snapshot()
    engine = h.state.engine
    cached = h.state.vllm_cache.serve(toks, cfg.block_size, data.get("cache_salt")) if cfg.prefix_caching else 0
    ended = faults.FINISHES.get((fault or {}).get("kind"))
    p = vllm_answer.plan(data, cfg, sw, len(toks), ended)
    n = data["n"] if isinstance(data.get("n"), int) and data["n"] > 0 else 1
    cid = "chatcmpl-" + (h.headers.get("X-Request-Id") or str(data.get("request_id") or "") or uuid.uuid4().hex)
    field = "reasoning_content" if cfg.sglang else "reasoning" if cfg.modern else str(sw["vllm_reasoning_field"])
    engine.served(len(toks), cached, p["completion_tokens"] * n, p["finish"])
    reasoning = p["reasoning_tokens"] * n if cfg.modern and not cfg.sglang and p["parser"] else None
    details = cfg.cache_report if cfg.sglang else cfg.prompt_tokens_details
    if sw["first_byte_delay_ms"] and not h.wait_unless_abandoned(sw["first_byte_delay_ms"] / 1000):
        return
    broken = ended == "error" and cfg.modern and not cfg.sglang  # 2026 GenerationError: "error" is a 500
    if not stream:
        engine.pace(len(p["pieces"]), h.server.stopping)
        if broken:
            return send_error(h, 500, error("Internal server error", "InternalServerError", 500))
        use = vllm_answer.usage(len(toks), p["completion_tokens"] * n, cached, details, True, reasoning)
        model = str(data.get("model") or cfg.names[0]) if cfg.sglang else cfg.names[0]
        whole = vllm_answer.completion(cid, model, p, n, use, field)
        answer = dumps(sglang.completion(whole, p) if cfg.sglang else whole)
        if fault and h.fault_answered(fault, False, answer):
            return
        return h.send_bytes(200, answer, "application/json")
    opts = data.get("stream_options") if isinstance(data.get("stream_options"), dict) else None
    default = not cfg.sglang  # SGLang's StreamOptions.include_usage defaults to false
    include = (opts is not None and opts.get("include_usage", default) is True) or cfg.force_include_usage
    options = {"include_usage": include, "continuous": include and bool((opts or {}).get("continuous_usage_stats")),
               "details": details, "reasoning": reasoning}
    model = str(data.get("model") or cfg.names[0]) if cfg.sglang else cfg.names[0]
    events = vllm_answer.chunks(cid, model, p, n, len(toks), cached, options, field)
    _stream(h, sglang.chunks(events) if cfg.sglang else events, sw, fault, broken)


def _stream(h, events, sw: dict, fault: dict | None, broken: bool = False) -> None:
    """The SSE body as uvicorn sends a StreamingResponse, with the queued stream fault played."""
    h.send_response(200)
    h.arm_cut(fault)
    h.send_header("Content-Type", "text/event-stream; charset=utf-8")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    kind, split = (fault or {}).get("kind"), sw["split_writes"]
    engine = h.state.engine
    for i, event in enumerate(events):
        if kind == "stall" and i == 1:
            h.wait_unless_abandoned(float(fault.get("seconds", sw["stall_seconds"])))
            return h.reset_connection()
        if kind == "reset_midstream" and i == 2:
            return h.reset_connection()
        if kind in ("midstream504", "error_finish", "nested_error") and i == 2:
            h.write_event(b"data: " + dumps(error(str(fault.get("message") or "Internal Server Error"))) + b"\n\n",
                          split)
            break
        finish = event.get("choices") and event["choices"][0].get("finish_reason")
        if broken and finish:  # the in-stream GenerationError (serving_chat's streaming conversion)
            h.write_event(b"data: " + dumps(error("Internal server error", "InternalServerError", 500)) + b"\n\n",
                          split)
            break
        if i and sw["gap_ms"]:
            h.server.stopping.wait(sw["gap_ms"] / 1000)
        if i and event.get("choices"):
            engine.pace(1, h.server.stopping)
        h.write_event(b"data: " + dumps(event) + b"\n\n", split)
    h.write_event(b"data: [DONE]\n\n", split)
    h.end_stream()
