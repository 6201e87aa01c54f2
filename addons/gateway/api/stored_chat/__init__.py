"""Stored chat completions (OpenAI's `store: true` on /v1/chat/completions, and the /v1/chat/completions/{id}
family that reads them back): `records.py` (pure: metadata rules, what is kept, list pages) and `endpoint.py` (the
chat endpoint that keeps them, and the local answers that read, update and delete them). Their stores are
stores/stored_chat.py (the state folder's database, beside the stored Responses) and stores/stored_chat_pg.py (the
shared PostgreSQL)."""
