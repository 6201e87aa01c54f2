"""Client dialects: each client API as endpoints that translate its requests to the chat form and
the chat answer (or its normalised chunks) back (../interfaces.py). A dialect never knows which upstream answers.

    chat.py         /v1/chat/completions (the chat form itself: validation and the client's stream)
    stored_chat/    its `store: true` completions, kept and read back (GET/POST/DELETE /v1/chat/completions/…)
    completions.py  /v1/completions
    embeddings.py   /v1/embeddings (a pass-through pair with DashScope: components.py)
    models.py       GET /v1/models, answered locally
    responses/      /v1/responses: request, items, tools, output, stream, store, WebSocket, compaction
"""
