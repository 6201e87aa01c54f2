"""SGLang mode (`qwen_emulator.py --serve sglang`): a self-hosted SGLang server (0.5.20, `--sglang-version`) serving
open Qwen weights, as `python -m sglang.launch_server --model-path Qwen/Qwen3-8B …` answers. It shares the vLLM mode's
routes, prompt, answers, prefix cache, engine and faults (vllm.py) where the wire is the same; this module holds what
SGLang does its own way (sgl-project/sglang `python/sglang/srt/entrypoints/openai/`: protocol.py, serving_chat.py,
serving_base.py; `python/sglang/srt/managers/tokenizer_manager.py`; `docs/basic_usage/`):

- Errors are flat: `{"object": "error", "message", "type", "param", "code"}` (protocol.ErrorResponse;
  serving_base.create_error_response: type "BadRequest" for a 400 unless the caller names one).
- Context (tokenizer_manager._validate_one_request): a prompt of `--context-length` tokens or more: "The input (N
  tokens) is longer than the model's context length (M tokens)."; prompt + max_tokens above it: "Requested token
  count exceeds the model's maximum context length of L tokens. You requested a total of T tokens: N tokens from the
  input messages and M tokens for the completion. Please reduce the number of tokens in the input messages or the
  completion to fit within the limit." (a total equal to the length included). No clamp.
- Reasoning (`--reasoning-parser qwen3`): `reasoning_content`, in messages and deltas; a thinking answer cut before
  `</think>` is all reasoning. Thinking budget: `chat_template_kwargs.thinking_budget`, a hard cap only with
  `--enable-strict-thinking` (SGLang's thinking_budget docs; not enforced for Qwen3.6 on 0.5.11/0.5.12, sglang
  #25536: not played).
- Usage: `stream_options.include_usage` defaults to false; `prompt_tokens_details.cached_tokens` only with
  `--enable-cache-report` and only when above 0; `reasoning_tokens` at the top of usage.
- `tool_choice: "auto"` without `--tool-call-parser` is no error: the model's call stays in the text.
- Any `model` is served, and echoed in the answer (SGLang does not check it).
- Routes: `/v1/chat/completions`, `/v1/models` (`owned_by: "sglang"`, `root`, `max_model_len`), `/health` and
  `/health_generate` (503 when the engine is dead), `/get_model_info`, `/metrics` only with `--enable-metrics`
  (`sglang:num_running_reqs`, `sglang:num_queue_reqs`, `sglang:token_usage`, `sglang:cache_hit_rate`, label
  `model_name`: metrics/collector.py). Finish reasons: stop, length, abort (the finish_abort fault).
"""

from __future__ import annotations

VERSION = "0.5.20"
ROUTES = {"/health_generate": ("GET",), "/get_model_info": ("GET",)}
# ChatCompletionRequest's fields (protocol.py): the request's other keys are ignored (pydantic's default)
FIELDS = frozenset((
    "messages model frequency_penalty logit_bias logprobs top_logprobs max_tokens max_completion_tokens n "
    "presence_penalty response_format seed stop stream stream_options temperature top_p user tools tool_choice "
    "return_hidden_states reasoning_effort top_k min_p min_tokens regex ebnf repetition_penalty stop_token_ids "
    "no_stop_trim ignore_eos continue_final_message skip_special_tokens lora_path session_params "
    "separate_reasoning stream_reasoning chat_template_kwargs rid bootstrap_host bootstrap_port bootstrap_room "
    "custom_logit_processor custom_params parallel_tool_calls").split())


def flat(body: dict) -> dict:
    """vLLM's nested error as SGLang writes its own: flat, `object: "error"`, a 400's type "BadRequest"."""
    err = body.get("error")
    if not isinstance(err, dict):
        return body
    kind = "BadRequest" if err.get("type") in ("BadRequestError", "Bad Request") else err.get("type")
    return {"object": "error", "message": err.get("message"), "type": kind, "param": err.get("param"),
            "code": err.get("code")}


def context_refusal(cfg, n: int, cap) -> dict | None:
    limit = cfg.max_model_len
    if n >= limit:
        return _err(f"The input ({n} tokens) is longer than the model's context length ({limit} tokens).")
    if isinstance(cap, int) and n + cap >= limit:  # SGLang refuses a total equal to the length too
        return _err(f"Requested token count exceeds the model's maximum context length of {limit} tokens. You "
                    f"requested a total of {n + cap} tokens: {n} tokens from the input messages and {cap} tokens "
                    "for the completion. Please reduce the number of tokens in the input messages or the completion "
                    "to fit within the limit.")
    return None


def _err(message: str) -> dict:
    return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


def model_card(cfg, name: str, now: int) -> dict:
    return {"id": name, "object": "model", "created": now, "owned_by": "sglang", "root": cfg.model, "parent": None,
            "max_model_len": cfg.max_model_len}


def model_info(cfg) -> dict:
    return {"model_path": cfg.model, "tokenizer_path": cfg.model, "is_generation": True,
            "preferred_sampling_params": None, "weight_version": "default", "has_image_understanding": False,
            "has_audio_understanding": False, "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}


def _usage(use: dict) -> dict:
    """UsageInfo: cached tokens only when above 0 (else null), reasoning_tokens last."""
    details = use.get("prompt_tokens_details")
    return {"prompt_tokens": use["prompt_tokens"], "total_tokens": use["total_tokens"],
            "completion_tokens": use["completion_tokens"],
            "prompt_tokens_details": details if details and details.get("cached_tokens") else None,
            "reasoning_tokens": 0}


def completion(whole: dict, p: dict) -> dict:
    """vLLM's whole answer (vllm_answer.completion) in SGLang's fields."""
    choices = []
    for c in whole["choices"]:
        m = c["message"]
        msg = {"role": m["role"], "content": m["content"], "reasoning_content": m.get("reasoning_content"),
               "tool_calls": m["tool_calls"] or None}
        choices.append({"index": c["index"], "message": msg, "logprobs": None, "finish_reason": c["finish_reason"],
                        "matched_stop": c["stop_reason"] if c["stop_reason"] else 151645 if c["finish_reason"] ==
                        "stop" else None})
    usage = _usage(whole["usage"])
    usage["reasoning_tokens"] = p["reasoning_tokens"] if p["parser"] else 0
    return {"id": whole["id"], "object": "chat.completion", "created": whole["created"], "model": whole["model"],
            "choices": choices, "usage": usage, "metadata": {"weight_version": "default"}}


def chunks(events):
    """vLLM's chunks in SGLang's fields: no token_ids / stop_reason / prompt_token_ids, its usage shape."""
    for e in events:
        out = {k: v for k, v in e.items() if k != "prompt_token_ids"}
        out["choices"] = [{k: v for k, v in c.items() if k not in ("token_ids", "stop_reason")}
                          for c in e.get("choices") or ()]
        if out.get("usage"):
            out["usage"] = _usage(out["usage"])
        yield out
