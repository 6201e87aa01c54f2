"""Qwen gateway for mitmproxy: answer OpenAI API calls with Qwen models.

    mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p 8080
    mitmweb  -s addons/qwen.py            # explicit proxy: api.openai.com is answered by Qwen

The code lives in the installed package `qwen_gateway` (`pip install -e .`, done by
scripts/setup.sh); this file only registers its one addon. See README.md.
"""

try:
    from mitmproxy import ctx
    from qwen_gateway.seams import collector

    collector.pause(ctx.master)  # no collector's pass while the gateway starts: one at `running` (settle)
    from qwen_gateway.addon import QwenGateway
    from qwen_gateway.mitmweb import contentviews

    contentviews.register()  # assembled streams and readable requests in mitmweb
except Exception as e:
    # mitmproxy would log this and go on as a plain proxy to the reverse target: stop it instead
    import logging

    logging.getLogger("qwen").error("qwen: the gateway cannot load: %s: %s", type(e).__name__, e)
    raise SystemExit(1) from None

addons = [QwenGateway()]
