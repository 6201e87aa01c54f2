"""What mitmweb shows for each gateway flow: a one-line summary (comment) and a marker; and a cap on
how many finished flows mitmweb keeps."""

from __future__ import annotations

import collections

from mitmproxy import ctx, http

MARK_OK, MARK_RETRIED, MARK_ERROR = ":white_check_mark:", ":repeat:", ":x:"


def summary_line(meta: dict) -> str:
    usage = meta.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    status = meta.get("status") or (meta.get("error") or {}).get("status")
    parts = [f"{meta.get('model') or '?'} → {meta.get('upstream_model') or '?'}", f"acct {meta.get('account') or '-'}",
             str(status or "?")]
    if usage:
        parts.append(f"in {usage.get('prompt_tokens')} / out {usage.get('completion_tokens')}"
                     + (f" (cached {cached})" if cached else ""))
    elif meta.get("prompt_tokens_est") is not None:
        parts.append(f"est {meta['prompt_tokens_est']} in")
    if meta.get("ttfb_ms") is not None:
        parts.append(f"ttfb {meta['ttfb_ms']:.0f} ms")
    if meta.get("duration_ms") is not None:
        parts.append(f"{meta['duration_ms'] / 1000:.2f} s")
    if meta.get("retries"):
        parts.append(f"retries {meta['retries']}")
    line = " · ".join(parts)
    extra = list(meta.get("notes") or [])
    err = meta.get("stream_error") or (meta.get("error") or {}).get("message")
    if err:
        extra.append(f"error: {err}")
    client = meta.get("client") or {}
    if client:
        extra.append(f"client: {client.get('method')} {client.get('url')}"
                     + (f" key {client['key']}" if client.get("key") else ""))
    return line + ("\n" + "\n".join(extra) if extra else "")


def marker(meta: dict) -> str:
    status = meta.get("status") or (meta.get("error") or {}).get("status") or 0
    if meta.get("error") or meta.get("stream_error") or (isinstance(status, int) and status >= 400):
        return MARK_ERROR
    return MARK_RETRIED if meta.get("retries") else MARK_OK


class FlowAnnotator:
    def response(self, flow: http.HTTPFlow) -> None:
        self._annotate(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._annotate(flow)

    @staticmethod
    def _annotate(flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("qwen")
        if not (isinstance(meta, dict) and meta.get("endpoint")):
            return
        flow.comment = summary_line(meta)
        if not flow.marked or flow.marked == flow.metadata.get("qwen_marker"):
            flow.marked = marker(meta)
            flow.metadata["qwen_marker"] = flow.marked


class FlowCap:
    """mitmweb keeps every flow forever; this keeps the newest N finished ones. Flows a person marked
    (a marker other than the annotator's) are kept; live flows are never removed."""

    def __init__(self) -> None:
        self.finished: collections.deque = collections.deque()
        self.view = None

    def running(self) -> None:
        self.view = ctx.master.addons.get("view")  # None in mitmdump: nothing to cap

    def load(self, loader) -> None:
        loader.add_option("qwen_web_flow_limit", int, 500,
                          "Finished flows mitmweb keeps (oldest removed first; 0: keep all).")

    def response(self, flow: http.HTTPFlow) -> None:
        self._track(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._track(flow)

    def _track(self, flow: http.HTTPFlow) -> None:
        view = self.view
        limit = ctx.options.qwen_web_flow_limit
        if view is None or limit <= 0:
            return
        self.finished.append(flow)
        if len(self.finished) <= limit:
            return
        drop = []
        keep = collections.deque()
        while len(self.finished) + len(keep) > limit and self.finished:
            f = self.finished.popleft()
            user_marked = f.marked and f.marked != f.metadata.get("qwen_marker")
            if f.live or user_marked:
                keep.append(f)
            else:
                drop.append(f)
        self.finished.extendleft(reversed(keep))
        drop = [f for f in drop if view.get_by_id(f.id) is not None]
        if drop:
            view.remove(drop)
