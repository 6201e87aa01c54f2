"""vLLM mode (vllm.py): what vLLM v0.11.0 refuses in a chat request before it renders the prompt, in its words.

ChatCompletionRequest (vllm/entrypoints/openai/protocol.py) is a pydantic model with `mode="before"` validators;
FastAPI 0.118 (current at the release) turns their ValueError into a RequestValidationError, which
api_server.validation_exception_handler answers 400 with type "Bad Request" and, as message, the errors list's
repr (`str(exc)`, equal to `str(exc.errors())`): `[{'type': 'value_error', 'loc': ('body',), 'msg': 'Value error,
…', 'input': {…the request…}, 'ctx': {'error': ValueError('…')}}]`. Other refusals come from serving_chat.py through
serving_engine.create_error_response (type "BadRequestError").
"""

from __future__ import annotations

import json

# ChatCompletionRequest's fields in v0.11.0 (protocol.py): the request's other keys are ignored
FIELDS = frozenset((
    "messages model frequency_penalty logit_bias logprobs top_logprobs max_tokens max_completion_tokens n "
    "presence_penalty response_format seed stop stream stream_options temperature top_p tools tool_choice "
    "reasoning_effort include_reasoning parallel_tool_calls user best_of use_beam_search top_k min_p "
    "repetition_penalty length_penalty stop_token_ids include_stop_str_in_output ignore_eos min_tokens "
    "skip_special_tokens spaces_between_special_tokens truncate_prompt_tokens prompt_logprobs allowed_token_ids "
    "bad_words echo add_generation_prompt continue_final_message add_special_tokens documents chat_template "
    "chat_template_kwargs mm_processor_kwargs structured_outputs guided_json guided_regex guided_choice "
    "guided_grammar structural_tag guided_decoding_backend guided_whitespace_pattern priority request_id "
    "logits_processors return_tokens_as_token_ids return_token_ids cache_salt kv_transfer_params vllm_xargs").split())
# 2026 releases add these (vllm protocol.py: thinking_token_budget with --reasoning-config; repetition_detection)
FIELDS_2026 = FIELDS | {"thinking_token_budget", "repetition_detection"}
AUTO_TOOLS = "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"
TEMPLATE = ("Chat template is passed with request, but --trust-request-chat-template is not set. Refused request "
            "with untrusted chat template.")
NOT_COMPATIBLE = ("continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                  "when you want the model to continue the final message, and add_generation_prompt when you want "
                  "to add a header that will prompt it to start a new assistant message instead.")
USAGE_CORRECT = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'


def error(message: str, type_: str = "BadRequestError", status: int = 400) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": status}}


def context_refusal(cfg, n: int, cap) -> dict | None:
    """The context-length refusal of the release played, or None: the prompt (n tokens) and the cap fit. vLLM never
    clamps the cap (vllm #42474).
    - v0.11.0 (serving_engine._validate_input): the prompt alone (n >= L), then the cap (n + M > L), each with
      serving_chat's " None" (`f"{e} {e.__cause__}"`).
    - 2026 (v0.15 to v0.29; v0.20 quoted in vllm #42474, the renderers' params.py): a VLLMValidationError(parameter=
      "input_tokens", value=n), whose str appends "(parameter=…, value=…)" and whose parameter becomes the error's
      `param` (create_error_response): the prompt alone in the older words, the cap as "you requested M output tokens
      and your prompt contains at least N input tokens, for a total of at least N+M tokens…".
    - v0.30 on: the prompt alone as "Input length (N) exceeds model's maximum context length (L)." (users' logs of
      v0.30 servers; `param` null: no parameter in the text), the cap as in v0.20.
    The boundaries are the documented releases (v0.20, v0.30); where between them each wording arrived is not known."""
    limit = cfg.max_model_len
    if not cfg.modern:
        if n >= limit:
            return error(f"This model's maximum context length is {limit} tokens. However, your request has {n} "
                         "input tokens. Please reduce the length of the input messages. None")
        if isinstance(cap, int) and n + cap > limit:
            return error(f"'max_tokens' or 'max_completion_tokens' is too large: {cap}. This model's maximum context "
                         f"length is {limit} tokens and your request has {n} input tokens ({cap} > {limit} - {n}). None")
        return None
    suffix = f" (parameter=input_tokens, value={n})"
    if n >= limit:
        if cfg.version_at_least((0, 30)):
            return error(f"Input length ({n}) exceeds model's maximum context length ({limit}).")
        body = error(f"This model's maximum context length is {limit} tokens. However, your request has {n} input "
                     f"tokens. Please reduce the length of the input messages.{suffix}")
        body["error"]["param"] = "input_tokens"
        return body
    if isinstance(cap, int) and n + cap > limit:
        body = error(f"This model's maximum context length is {limit} tokens. However, you requested {cap} output "
                     f"tokens and your prompt contains at least {n} input tokens, for a total of at least {n + cap} "
                     "tokens. Please reduce the length of the input prompt or the number of requested output "
                     f"tokens.{suffix}")
        body["error"]["param"] = "input_tokens"
        return body
    return None


def _invalid(data, msg: str) -> tuple[int, dict]:
    """A model validator's ValueError as FastAPI reports it: the errors list's repr, type "Bad Request"."""
    errors = [{"type": "value_error", "loc": ("body",), "msg": f"Value error, {msg}", "input": data,
               "ctx": {"error": ValueError(msg)}}]
    return 400, error(str(errors), "Bad Request")


def validate(data: dict) -> tuple[int, dict] | None:
    """ChatCompletionRequest's `mode="before"` validators, last defined first (pydantic wraps each around the
    previous), then the one required field; `data` is changed as check_tool_usage changes it."""
    salt = data.get("cache_salt")
    if salt is not None and (not isinstance(salt, str) or not salt):
        return _invalid(data, "Parameter 'cache_salt' must be a non-empty string if provided.")
    if data.get("continue_final_message") and data.get("add_generation_prompt"):
        return _invalid(data, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    if "tool_choice" not in data and data.get("tools"):
        data["tool_choice"] = "auto"
    choice = data.get("tool_choice")
    if choice is not None and choice != "none":
        if data.get("tools") is None:
            return _invalid(data, "When using `tool_choice`, `tools` must be set.")
        if choice not in ("auto", "required") and not isinstance(choice, dict):
            return _invalid(data, f"Invalid value for `tool_choice`: {choice}! Only named tools, \"none\", \"auto\" "
                                  "or \"required\" are supported.")
        if choice == "required" and isinstance(data["tools"], list) and not data["tools"]:
            data["tool_choice"] = "none"
            del data["tools"]
        elif isinstance(choice, dict):
            fn = choice.get("function")
            if not isinstance(fn, dict):
                return _invalid(data, f"Invalid value for `function`: `{fn}` in `tool_choice`! {USAGE_CORRECT}")
            if "name" not in fn:
                return _invalid(data, f"Expected field `name` in `function` in `tool_choice`! {USAGE_CORRECT}")
            if not any((t.get("function") or {}).get("name") == fn["name"] for t in data["tools"]
                       if isinstance(t, dict)):
                return _invalid(data, "The tool specified in `tool_choice` does not match any of the specified "
                                      "`tools`")
    top = data.get("top_logprobs")
    if isinstance(top, int) and (top == -1 or top > 0) and not data.get("logprobs"):
        return _invalid(data, "when using `top_logprobs`, `logprobs` must be set to true.")
    if data.get("stream_options") and not data.get("stream"):
        return _invalid(data, "Stream options can only be defined when `stream=True`.")
    if not isinstance(data.get("messages"), list):
        missing = "messages" not in data
        err = {"type": "missing" if missing else "list_type", "loc": ("body", "messages"),
               "msg": "Field required" if missing else "Input should be a valid list",
               "input": data if missing else data.get("messages")}
        return 400, error(str([err]), "Bad Request")
    for i, m in enumerate(data["messages"]):
        if not isinstance(m, dict):  # a message is a TypedDict (pydantic's report of the union shortened to its gist)
            return 400, error(str([{"type": "dict_type", "loc": ("body", "messages", i),
                                    "msg": "Input should be a valid dictionary", "input": m}]), "Bad Request")
    return None


def read_body(ctype: str, raw: bytes):
    """The body as FastAPI reads it: (data, problem) — problem a (status, body) refusal."""
    media = ctype.split(";")[0].strip().lower()
    data, bad = None, None
    if raw and (not ctype or media.startswith("application/") and (media.endswith("/json") or media.endswith(
            "+json"))):  # FastAPI reads a JSON body before the route's dependencies run
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            pos, msg = (e.pos, e.msg) if isinstance(e, json.JSONDecodeError) else (0, str(e))
            bad = [{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error", "input": {},
                    "ctx": {"error": msg}}]
    if bad is not None:
        return data, (400, error(str(bad), "Bad Request"))
    if media != "application/json":  # api_server.validate_json_request
        return data, (400, error(str(["Unsupported Media Type: Only 'application/json' is allowed"]), "Bad Request"))
    if not isinstance(data, dict):
        err = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None} if data is None else {
            "type": "model_attributes_type", "loc": ("body",),
            "msg": "Input should be a valid dictionary or object to extract fields from", "input": data}
        return data, (400, error(str([err]), "Bad Request"))
    return data, None
