"""Qwen Chat web accounts (chat.qwen.ai) as an upstream: `upstream.QwenWeb`, registered for WEB accounts in components.pairing()."""
