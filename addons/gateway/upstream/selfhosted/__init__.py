"""Qwen on the team's own servers: an OpenAI-compatible inference server (vLLM, SGLang) serving open Qwen weights,
as a provider (providers.py). Its knobs are the server's documented ones: thinking switched through
`chat_template_kwargs` (Qwen3's chat template reads `enable_thinking`), an answer continued from its prefix through
`continue_final_message`, usage asked of a stream with `stream_options.include_usage`, its automatic prefix cache
reported in `usage.prompt_tokens_details` when the server is started to say so. Accounts name it:
`qwen-auth add-key NAME --provider selfhosted --base-url http://HOST:8000/v1 --key-env VAR`."""
