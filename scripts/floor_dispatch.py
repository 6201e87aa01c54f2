"""A mitmproxy script for the floor (scripts/bench_floor.py): bare mitmdump with the gateway's hook dispatch
and nothing else of the gateway — `seams/hook_dispatch.py` installed on the master's AddonManager as the
gateway's `load` installs it. What bare mitmdump costs once mitmproxy's event dispatch skips the addons an
event has nothing to do in: the floor the gateway's own work per request is measured against."""

from qwen_gateway.seams import hook_dispatch


class HookDispatchOnly:
    def load(self, loader) -> None:
        master = getattr(loader, "master", None)
        if master is not None and not hook_dispatch.install(master.addons):
            raise SystemExit("floor_dispatch: the hook dispatch did not install (another mitmproxy?)")


addons = [HookDispatchOnly()]
