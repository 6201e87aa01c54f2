"""Qwen emulator: a real HTTP server speaking Qwen's OAuth device flow and chat API, offline.

Try the whole product without a Qwen account (three terminals):

    .venv/bin/python scripts/qwen_emulator.py --port 9999 --api-key sk-demo
    export DEMO_KEY=sk-demo      # both qwen-auth (status) and the gateway read the key from it
    .venv/bin/qwen-auth add-key demo --base-url http://127.0.0.1:9999/v1 --key-env DEMO_KEY
    .venv/bin/mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p 8080

then point any OpenAI client at http://127.0.0.1:8080/v1. Or log in through the device flow:
`export QWEN_OAUTH_BASE_URL=http://127.0.0.1:9999`, then `.venv/bin/qwen-auth login` and open the printed
link (an "Approve" page served by the emulator); the gateway needs the same variable to refresh the login.
See docs/emulator.md, whose recipes the docs test runs.

Answers are deterministic: "Echo: <your last message>", a tool call when the prompt names an offered
tool (with its required arguments filled), "Tool said: <result>" after a tool message, reasoning_content
first. Test hooks live under
/_emulator/ (switches, fault, requests, stats, tokens, cache, batches, approve/deny/expire, reset): see
docs/emulator.md. Besides chat: Model Studio's own Responses API (with its session cache) and its Files and
Batch APIs, on pay-as-you-go's /compatible-mode/v1.

`--serve vllm` plays a self-hosted vLLM OpenAI-compatible server (v0.11.0) serving open Qwen weights instead, with
vLLM's own flags (--model, --served-model-name, --max-model-len, --reasoning-parser, --enable-auto-tool-choice,
--tool-call-parser, --enable-prompt-tokens-details, ...): docs/emulator.md, "vLLM mode"; `--vllm-version 0.20.0` the 2026
releases ("vLLM 2026 releases"), `--serve sglang` a self-hosted SGLang server ("SGLang mode").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import emulator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    ap.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    ap.add_argument("--port-file", metavar="PATH", help="write the port number here once listening")
    ap.add_argument("--api-key", action="extend", nargs="+", default=[], metavar="KEY",
                    help="an API key the chat API accepts (repeatable; vLLM mode: the keys /v1 requires)")
    ap.add_argument("--seed-token", action="append", default=[], metavar="TOKEN",
                    help="an OAuth access token the chat API accepts, never expiring (repeatable)")
    ap.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain) ...")
    ap.add_argument("--tls-key", metavar="PEM", help="... and this private key (default: in --tls-cert)")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines on stderr")
    vl = ap.add_argument_group("vLLM and SGLang modes (--serve vllm|sglang), as `vllm serve` / sglang take them")
    vl.add_argument("--serve", choices=("dashscope", "vllm", "sglang"), default="dashscope",
                    help="what to play: Qwen's services (default), a self-hosted vLLM or SGLang server")
    vl.add_argument("--model", "--model-path", default="Qwen/Qwen3-8B",
                    help="the weights served (default: Qwen/Qwen3-8B)")
    vl.add_argument("--served-model-name", action="extend", nargs="+", default=[], metavar="NAME",
                    help="the model ids clients use (default: --model)")
    vl.add_argument("--max-model-len", "--context-length", type=int, default=40960,
                    help="context length in tokens (default: 40960)")
    vl.add_argument("--reasoning-parser", choices=("qwen3",), help="split the <think> reasoning out of the content")
    vl.add_argument("--enable-auto-tool-choice", action="store_true", help='serve tool_choice "auto"')
    vl.add_argument("--tool-call-parser", choices=emulator.vllm_tools.PARSERS,
                    help="the tool-call format parsed: hermes (JSON), qwen3_coder or qwen3_xml (Qwen3.6's XML)")
    vl.add_argument("--enable-prompt-tokens-details", action="store_true",
                    help="usage.prompt_tokens_details.cached_tokens on prefix-cache hits")
    vl.add_argument("--enable-force-include-usage", action="store_true", help="a usage chunk in every stream")
    vl.add_argument("--block-size", type=int, default=16, help="prefix-cache block in tokens (default: 16)")
    vl.add_argument("--no-enable-prefix-caching", action="store_true", help="no automatic prefix caching")
    vl.add_argument("--vllm-version", default=emulator.vllm.VERSION,
                    help="the vLLM release played (default 0.11.0; 0.15 or later: the 2026 behaviour)")
    vl.add_argument("--sglang-version", default=emulator.sglang.VERSION, help="the SGLang release played (0.5.20)")
    vl.add_argument("--chat-template", choices=emulator.vllm_template.TEMPLATES,
                    help="the Qwen3.6/3.8 chat template's rules (default: Qwen3's)")
    vl.add_argument("--reasoning-config", type=json.loads, metavar="JSON",
                    help='vLLM: enables thinking_token_budget, e.g. \'{"reasoning_start_str": "<think>", '
                         '"reasoning_end_str": "</think>"}\'')
    vl.add_argument("--default-chat-template-kwargs", type=json.loads, metavar="JSON",
                    help="vLLM: chat_template_kwargs every request gets, under its own (e.g. '{\"enable_thinking\": false}')")
    vl.add_argument("--max-num-seqs", "--max-running-requests", type=int, default=256,
                    help="requests generating at once; the rest queue (default: 256)")
    vl.add_argument("--token-delay", type=float, default=0.0, metavar="S",
                    help="seconds each generated token takes (default: 0; POST /_emulator/speed changes it)")
    vl.add_argument("--responses-store", action="store_true",
                    help="vLLM: VLLM_ENABLE_RESPONSES_API_STORE=1 (store, previous_response_id, background)")
    vl.add_argument("--enable-cache-report", action="store_true", help="SGLang: cached_tokens in usage")
    vl.add_argument("--enable-strict-thinking", action="store_true",
                    help="SGLang: chat_template_kwargs.thinking_budget is a hard cap")
    vl.add_argument("--enable-metrics", action="store_true", help="SGLang: serve /metrics")
    a = ap.parse_args(argv)
    config = None
    if a.serve in ("vllm", "sglang"):
        if a.serve == "vllm" and a.enable_auto_tool_choice and not a.tool_call_parser:  # vllm cli_args.py
            ap.exit(1, "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser\n")
        sg = a.serve == "sglang"
        config = emulator.vllm.Config(
            model=a.model, served=tuple(a.served_model_name), max_model_len=a.max_model_len,
            api_keys=tuple(a.api_key), reasoning_parser=a.reasoning_parser,
            auto_tools=a.enable_auto_tool_choice or (sg and bool(a.tool_call_parser)),
            tool_parser=a.tool_call_parser, prompt_tokens_details=a.enable_prompt_tokens_details,
            force_include_usage=a.enable_force_include_usage, block_size=a.block_size,
            prefix_caching=not a.no_enable_prefix_caching, version=a.sglang_version if sg else a.vllm_version,
            template=a.chat_template, reasoning_config=a.reasoning_config, max_num_seqs=a.max_num_seqs,
            token_delay=a.token_delay, responses_store=a.responses_store, engine=a.serve,
            cache_report=a.enable_cache_report, strict_thinking=a.enable_strict_thinking,
            metrics=a.enable_metrics or not sg, default_kwargs=a.default_chat_template_kwargs)
    tls = None
    if a.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)
    handle = emulator.start(a.host, a.port, quiet=a.quiet, api_keys=a.api_key, seed_tokens=a.seed_token, tls=tls,
                            vllm=config)
    what = f" ({'SGLang' if config.sglang else 'vLLM'} {config.version} serving {a.model})" if config else ""
    print(f"Qwen emulator{what} listening on {handle.url}", flush=True)
    if a.port_file:
        tmp = f"{a.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(handle.port))
        os.replace(tmp, a.port_file)  # readers never see a half-written port
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
