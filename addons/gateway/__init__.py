"""The Qwen gateway: OpenAI API in, Qwen API out, as mitmproxy addons."""
