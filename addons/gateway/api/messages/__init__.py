"""The Anthropic Messages API (Claude Code, the `anthropic` SDKs) on the chat form.

    endpoints.py  /v1/messages, count_tokens, the model list in Anthropic's shape
    request.py    Messages request -> chat request (content.py: the content blocks)
    response.py   chat answer -> Message
    stream.py     normalised chunks -> Anthropic's stream events
    thinking.py   thinking blocks' gateway-made signatures
    errors.py     Anthropic's error objects
    side.py       what an unchanged Claude Code asks api.anthropic.com besides the model (answered locally)
"""
