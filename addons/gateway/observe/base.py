"""What an observer is: a plain object the gateway calls at named points of an exchange.

Observers are not mitmproxy addons: they declare no options (config.py does), see only the flows the
gateway claims, and read the gateway's typed `Exchange`. The gateway calls each one inside its own
try/except: a failing observer is logged and never changes the flow or stops the next observer.
Only the methods a class overrides are called (the gateway looks them up once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mitmproxy import http

    from ..config import Config
    from ..exchange import Exchange

# The named points, in the order an exchange passes them.
POINTS = ("client_request", "upstream_request", "stream_started", "finished")


class Observer:
    # Whether `finished` should wait (a few seconds at most) for a prompt estimate still being counted:
    # only observers that print or store the estimate do.
    waits_for_estimate = False
    # Whether `finished` changes the flow (its comment, its marker, mitmweb's list): then it runs before
    # mitmproxy sends and shows the answer. Every other observer's `finished` runs just after the answer
    # was handed to the client's connection, off the request's path.
    changes_flow = False

    def configure(self, config: Config) -> None:
        """The options changed (also called once before the first flow)."""

    def running(self) -> None:
        """mitmproxy is running (its event loop exists; mitmweb's view is loaded)."""

    def client_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The client's request was read and classified (`ex.client`, `ex.route`, `ex.body`)."""

    def upstream_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The request is about to go to Qwen (`ex.upstream_body`, `ex.upstream_url`, `ex.account`)."""

    def stream_started(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """A streamed answer began (`ex.rewriter` set)."""

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The client has its whole answer, or the exchange ended in an error (`ex.status`, `ex.error`).
        Unless `changes_flow`, runs once the answer is on its way (the next turn of the event loop); with
        `waits_for_estimate`, after the prompt estimate if one was still being counted (a few seconds at
        most)."""

    def done(self) -> None:
        """mitmproxy is shutting down: write what is buffered."""


def overrides(observer: Observer, point: str) -> bool:
    return getattr(type(observer), point, None) is not getattr(Observer, point)
