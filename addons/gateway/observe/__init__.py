"""Usage and observability addons. Each concern is one small mitmproxy addon; each reads only the
gateway's record of an exchange, `flow.metadata["qwen"]` (see addons/gateway/exchange.py).

Before the gateway (they must see or answer the client's request as it arrived):
    MetricsEndpoint   metrics.py    GET /metrics
    DebugCapture      debuglog.py   the client's request, Qwen's response before it is rewritten
    ContextGuard      guard.py      400 context_length_exceeded without asking Qwen
After the gateway (they read its record):
    TokenCounter      tokens.py     prompt estimate with tiktoken, in a thread, off the request path
    MetricsRecorder   metrics.py    counters and histograms
    RequestLog        requestlog.py one line per request in mitmproxy's log
    UsageLedger       ledger.py     one SQLite row per request (qwen-usage reads it)
    DebugLog          debuglog.py   one redacted JSON file per exchange
"""
