"""Qwen gateway for mitmproxy: answer OpenAI API calls with Qwen models.

    mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p 8080
    mitmweb  -s addons/qwen.py            # explicit proxy: api.openai.com is answered by Qwen

See README.md. Sibling packages are imported from the repository root.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from addons.gateway.access import AccessControl  # noqa: E402
from addons.gateway import contentviews  # noqa: E402
from addons.gateway.addon import QwenGateway  # noqa: E402
from addons.gateway.flowview import FlowAnnotator, FlowCap  # noqa: E402
from addons.gateway.observe.debuglog import DebugCapture, DebugLog  # noqa: E402
from addons.gateway.observe.guard import ContextGuard  # noqa: E402
from addons.gateway.observe.ledger import UsageLedger  # noqa: E402
from addons.gateway.observe.metrics import GatewayMetrics, MetricsEndpoint, MetricsRecorder  # noqa: E402
from addons.gateway.observe.requestlog import RequestLog  # noqa: E402
from addons.gateway.observe.tokens import TokenCounter  # noqa: E402

contentviews.register()  # assembled streams and readable requests in mitmweb
gateway = QwenGateway()
metrics = GatewayMetrics()
# Order matters: mitmproxy calls each hook on these addons in this order. Before the gateway: what
# must see (or answer) the client's request as it arrived; after it: what reads the gateway's record.
addons = [
    AccessControl(gateway),  # 401 / 413 before anything is rerouted
    MetricsEndpoint(gateway, metrics),  # GET /metrics
    DebugCapture(),  # the client's request, as sent
    ContextGuard(gateway),  # context_length_exceeded without waiting for Qwen
    gateway,
    TokenCounter(),  # prompt estimate, off the request path
    MetricsRecorder(metrics),
    RequestLog(),
    UsageLedger(gateway),
    DebugLog(gateway),
    FlowAnnotator(),  # one-line summary + marker for mitmweb
    FlowCap(),  # bounded memory in mitmweb
]
