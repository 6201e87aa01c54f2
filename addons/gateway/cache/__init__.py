"""Qwen's prompt cache as the gateway follows it (core): a request's prefix as fingerprints (prints.py, in each
form a body reaches Qwen: prints_forms.py), how two turns' prefixes differ and why a turn missed (compare.py),
what is kept of past turns, bounded (memory.py), how long a prefix lives (lifetime.py), and what a client that
asked for cache diagnostics is answered (diagnosis.py). The cache doctor (observe/cache_doctor.py) and the
dialects' diagnostics (api/messages, api/responses) share one memory: hashes and sizes, never prompt text."""
