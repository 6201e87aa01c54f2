"""A mitmproxy script for the floor bench (scripts/bench_floor.py): bare mitmdump with the gateway's seams on
mitmproxy's own request path — the hook dispatch (seams/hook_dispatch.py) and the message checks
(seams/message_checks.py), installed as the gateway's `load` installs them — and nothing else of the gateway.
The floor with every speed-up the gateway gives mitmproxy itself: against it, what is left is the gateway's
own work."""

from qwen_gateway.seams import hook_dispatch, message_checks


class Seams:
    def load(self, loader) -> None:
        master = getattr(loader, "master", None)
        if master is None or not hook_dispatch.install(master.addons) or not message_checks.install(master):
            raise SystemExit("floor_seams: a seam did not install (another mitmproxy?)")


addons = [Seams()]
