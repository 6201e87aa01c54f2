"""Usage and observability: plain observer objects the gateway calls at named points of each exchange
(see ../observer.py; ../dispatch.py calls them); they never change the flow (the context guard, which refuses
requests, is a check of the turn: ../turn/context_guard.py). None is a mitmproxy
addon: they declare no options (settings/config.py does), read the gateway's typed `Exchange` (exchange.py) and the
`Config` handed to `configure`, and keep their own state on the instance.

    TokenEstimator  estimator.py   client_request: prompt estimate in a worker thread (ex.count.task)
    Metrics         metrics.py     stream_started, finished; exposition(pool) for GET /metrics
    RequestLine     requestlog.py  finished: one line per exchange in mitmproxy's log
    UsageLedger     ledger.py      finished, done: one row per exchange, SQLite or the shared PostgreSQL (qwen-usage reads it)
    DebugLog        debuglog.py    client_request, upstream_request, finished: one redacted JSON file
    FlowAnnotator   ../mitmweb/flowview.py  finished: mitmweb summary and marker
    FlowCap         ../mitmweb/flowview.py  running, finished: bounded flows and request bodies in mitmweb

Shared, stateless, in the core: ../observer.py (what an exchange was: endpoint or route, status, error),
../redact.py (secrets out of headers, URLs and text before anything is written or shown), ../tokens.py
(the counting itself). ../components.py lists the observers and their order.

Every exchange the gateway claims reaches `finished`, local answers and refusals included.
"""
