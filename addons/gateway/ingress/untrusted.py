"""A client at the explicit proxy (or transparent) that does not trust mitmproxy's CA: the line that says which
setting gives it the CA, once per host an hour.

mitmproxy logs "Client TLS handshake failed. The client does not trust the proxy's certificate for HOST" at every
attempt, and a client such as Codex retries "waiting for network" for ever: the setting that fixes it is named
nowhere. Which program failed cannot be read from the handshake (Codex's CONNECT carries no User-Agent), so the
line names the settings of the clients that call that host (docs/clients.md, "Who honours HTTPS_PROXY").
"""

from __future__ import annotations

import logging
from pathlib import Path

from mitmproxy.proxy import mode_specs

from ..log_tally import Once
from . import mistakes

log = logging.getLogger("qwen")

CA_FILE = "mitmproxy-ca-cert.pem"
DOC = "docs/clients.md#who-honours-https_proxy"

# the setting that gives each client a CA file ({ca}: the first named gets the path, the others "that file")
CODEX = "Codex: CODEX_CA_CERTIFICATE={ca} (or SSL_CERT_FILE)"
PYTHON = "Python (openai, anthropic, httpx): SSL_CERT_FILE={ca}; requests: REQUESTS_CA_BUNDLE"
NODE = "Node programs (openai-node): NODE_EXTRA_CA_CERTS={ca}"
CLAUDE = "Claude Code and other Node programs: NODE_EXTRA_CA_CERTS={ca}"
CURL = "curl: --cacert {ca}"
SETTINGS = {  # who calls the host, and how each is given a CA
    "api.openai.com": (CODEX, PYTHON, NODE, CURL),
    "chatgpt.com": (CODEX,),
    "ab.chatgpt.com": (CODEX,),
    "api.anthropic.com": (CLAUDE, PYTHON, CURL),
}
ANY = (CODEX, CLAUDE, PYTHON, CURL)
UNTRUSTED = ("does not trust the proxy's certificate", "may not trust the proxy's certificate",
             "may indicate that the client does not trust")


class MistakeLines:
    """The lines of a client's certificate mistakes: `https://` on a reverse listener (mistakes.py), a CA the
    client does not trust at the explicit proxy; `once` also serves the entrance's other mistakes (a CONNECT on a
    reverse listener)."""

    def __init__(self) -> None:
        self.once = Once()
        self.untrusted = UntrustedCa(self.once)

    def refused(self, flow) -> None:
        """`requestheaders` of a flow with a response, an error or no longer live: mitmproxy's own refusal."""
        if flow.error:
            mistakes.refused_by_mitmproxy(flow, self.once)

    def tls_failed(self, client, own_certs: bool, confdir: str) -> None:
        if not own_certs:  # a reverse listener speaks plain HTTP unless given certificates of the user's own
            mistakes.https_on_plain_listener(client)
        if line := self.untrusted.line(client, confdir):
            log.warning(line)


class UntrustedCa:
    def __init__(self, once: Once | None = None) -> None:
        self.once = once or Once()  # per host: an hour (a setting changed meanwhile may have failed again)

    def line(self, client, confdir: str) -> str | None:
        """The line for a client's failed handshake (`client`: mitmproxy's Client, its `error` set), or None: not
        a CA it distrusts, a reverse listener (mistakes.https_on_plain_listener says that one), said lately."""
        error = getattr(client, "error", None) or ""
        if isinstance(client.proxy_mode, mode_specs.ReverseMode) or not any(u in error for u in UNTRUSTED):
            return None
        host = client.sni or "this host"
        if not self.once.due(host):
            return None
        ca = str(Path(confdir).expanduser() / CA_FILE)
        settings = SETTINGS.get(host, ANY)
        how = "; ".join(s.format(ca=ca if i == 0 else "that file") for i, s in enumerate(settings))
        return (f"qwen: a client does not trust the gateway's certificate for {host}: give it mitmproxy's CA. "
                f"{how} ({DOC}; said once an hour per host)")
