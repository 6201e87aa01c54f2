"""The cache doctor: Qwen's prompt cache as the gateway follows it, a wing on top of the core (the core imports
none of it: tests/repo/test_layers.py): a request's prefix as fingerprints (prints.py, in each form a body reaches
Qwen: prints_forms.py), how two turns' prefixes differ and why a turn missed (compare.py), what is kept of past
turns, bounded (memory.py), and what a client that asked for cache diagnostics is answered (diagnosis.py). What
the core itself needs of the cache is the core's: a usage's cache counts (cache_usage.py), the markers
(cache_markers.py), the records on the exchange (cache_turn.py), the lifetime a turn asks (turn/cache_lifetime.py).
The cache doctor (observe/cache_doctor.py) and the dialects' diagnostics (api/messages, api/responses) share one
memory: hashes and sizes, never prompt text."""
