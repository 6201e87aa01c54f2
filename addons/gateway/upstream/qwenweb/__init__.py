"""Qwen Chat web accounts (chat.qwen.ai) as an upstream: `upstream.QWEN_WEB` (docs/architecture.md)."""
