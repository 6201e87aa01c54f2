"""Qwen gateway for mitmproxy: answer OpenAI API calls with Qwen models.

    mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p 8080
    mitmweb  -s addons/qwen.py            # explicit proxy: api.openai.com is answered by Qwen

The code lives in the installed package `qwen_gateway` (`pip install -e .`, done by
scripts/setup.sh); this file only registers its addons. See README.md.
"""

from qwen_gateway.access import AccessControl
from qwen_gateway import contentviews
from qwen_gateway.addon import QwenGateway
from qwen_gateway.flowview import FlowAnnotator, FlowCap
from qwen_gateway.observe.debuglog import DebugCapture, DebugLog
from qwen_gateway.observe.guard import ContextGuard
from qwen_gateway.observe.ledger import UsageLedger
from qwen_gateway.observe.metrics import GatewayMetrics, MetricsEndpoint, MetricsRecorder
from qwen_gateway.observe.requestlog import RequestLog
from qwen_gateway.observe.tokens import TokenCounter

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
