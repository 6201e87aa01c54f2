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
from addons.gateway.addon import QwenGateway  # noqa: E402

gateway = QwenGateway()
# Order matters: mitmproxy calls each hook on the addons in this order.
addons = [
    AccessControl(gateway),  # 401/413 before anything is rerouted
    gateway,
]
