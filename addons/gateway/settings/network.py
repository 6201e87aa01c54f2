"""How the gateway's own calls reach Qwen on a real network: through which proxy, trusting which CAs.

Read once in `configure` (config.parse) from mitmproxy's options and the environment, then used by the
engine's pool (upstream/client.py) and, through AuthSettings, by the OAuth refresh (auth/oauth.py):

- Proxy: mitmproxy's own `--mode upstream:http://host:port` (with `upstream_auth` for its credentials)
  wins; else `HTTPS_PROXY`/`https_proxy` (`HTTP_PROXY` for a plain-http upstream), else `ALL_PROXY`, with
  `NO_PROXY` honoured — read by urllib's `getproxies_environment` / `proxy_bypass_environment` (host
  suffixes, `*`, host:port), plus CIDR ranges (`10.0.0.0/8`) as curl and httpx take them.
- Trust: `ssl_verify_upstream_trusted_ca` / `ssl_verify_upstream_trusted_confdir` (mitmproxy's options),
  else `SSL_CERT_FILE` / `SSL_CERT_DIR` (OpenSSL's variables), else certifi's roots (as mitmproxy and
  httpx do). Like OpenSSL and mitmproxy, a named bundle replaces the default roots. `ssl_insecure`: no
  verification at all, said once at start.

Two settings made for the gateway's *clients* are ignored, with one warning line each, because following
them would send Qwen's traffic into the gateway itself: a proxy variable naming one of the gateway's own
loopback listeners (`HTTPS_PROXY=http://127.0.0.1:8080`, the explicit-proxy recipe) and an `SSL_CERT_FILE`
naming the gateway's own CA (`~/.mitmproxy/mitmproxy-ca-cert.pem`, the same recipe).

A proxy's credentials (`http://user:pass@proxy:3128`) become a `Proxy-Authorization: Basic` header and
are never shown: `Proxy.shown` is what errors and logs print.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import certifi
from mitmproxy.proxy import mode_specs

# mitmproxy options the network settings are read from (configure re-reads them when one changes).
OPTIONS = frozenset({"mode", "listen_port", "upstream_auth", "ssl_insecure", "ssl_verify_upstream_trusted_ca",
                     "ssl_verify_upstream_trusted_confdir", "confdir"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class NetworkSettingError(ValueError):
    """A proxy or CA setting the gateway cannot use (the message names it, never a credential)."""


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    source: str  # where it came from: "--mode upstream", "HTTPS_PROXY", ...
    authorization: str | None = field(default=None, repr=False)  # "Basic …" for Proxy-Authorization
    url: str = field(default="", repr=False, compare=False)  # with credentials: for httpx (OAuth) only

    @property
    def shown(self) -> str:
        """The proxy as errors and logs name it: never its credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}" + (" (with credentials)" if self.authorization else "")


@dataclass(frozen=True)
class Network:
    mode_proxy: Proxy | None = None  # mitmproxy's --mode upstream: wins over the environment
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # getproxies_environment(), resolved once
    ca_file: str | None = None
    ca_dir: str | None = None
    insecure: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)  # logged once when the settings change

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a request to scheme://host:port goes through, or None for a direct connection."""
        if self.mode_proxy is not None:
            return self.mode_proxy
        proxies = dict(self.env)
        url = proxies.get(scheme) or proxies.get("all")
        if not url or bypassed(host, port, proxies.get("no", "")):
            return None
        return _proxy(url, _env_name(proxies, scheme))

    def proxy_url(self, url: str) -> str | None:
        """For httpx (the OAuth calls): the proxy URL, credentials included, for `url`; None: direct."""
        parts = urlsplit(url)
        scheme = parts.scheme or "https"
        proxy = self.proxy_for(scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))
        return proxy.url if proxy is not None else None

    def ssl_context(self) -> ssl.SSLContext:
        return tls_context(self.ca_file, self.ca_dir, self.insecure)


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY as curl and httpx read it: urllib's rules (`*`, suffixes, host:port) and CIDR ranges."""
    if not no_proxy.strip():
        return False
    # typeshed leaves out this (documented in its module, public since Python 2) function
    if urllib.request.proxy_bypass_environment(f"{host}:{port}", {"no": no_proxy}):  # type: ignore[attr-defined]
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    for entry in no_proxy.split(","):
        entry = entry.strip().strip("[]")
        try:
            if entry and address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a name, not an address or a range
    return False


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None, ca_dir: str | None, insecure: bool) -> ssl.SSLContext:
    """One context per trust setting (built once: loading a bundle costs milliseconds)."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_file or ca_dir:
        return ssl.create_default_context(cafile=ca_file, capath=ca_dir)
    return ssl.create_default_context(cafile=certifi.where())


def from_options(o) -> Network:
    """mitmproxy's options + the environment -> Network; raises NetworkSettingError for what cannot be used."""
    env = os.environ
    warnings: list[str] = []
    mode_proxy = _mode_proxy(list(o.mode), getattr(o, "upstream_auth", None))  # an addon's option: may be absent
    proxies = urllib.request.getproxies_environment()
    own = _own_listeners(list(o.mode), o.listen_port)
    kept = []
    # only the variables the gateway reads (not npm_config_proxy, GIT_PROXY…), and none under --mode upstream
    for scheme in () if mode_proxy is not None else ("http", "https", "all", "no"):
        url = proxies.get(scheme)
        if not url:
            continue
        if scheme != "no":
            proxy = _proxy(url, _env_name(proxies, scheme))  # a bad value is refused even if unused
            if proxy.host.lower() in LOOPBACK_NAMES | _loopback(proxy.host) and proxy.port in own:
                warnings.append(f"qwen: {proxy.source}={proxy.shown} is this gateway's own listener: ignored "
                                "for the gateway's calls to Qwen (it is for the gateway's clients)")
                continue
        kept.append((scheme, url))
    insecure = bool(o.ssl_insecure)
    ca_file = o.ssl_verify_upstream_trusted_ca or None
    ca_dir = o.ssl_verify_upstream_trusted_confdir or None
    if ca_file is None and ca_dir is None:
        ca_file, ca_dir = env.get("SSL_CERT_FILE") or None, env.get("SSL_CERT_DIR") or None
        confdir = Path(o.confdir).expanduser()
        if ca_file and Path(ca_file).expanduser().resolve() in {
                (confdir / name).resolve() for name in ("mitmproxy-ca-cert.pem", "mitmproxy-ca.pem")}:
            warnings.append(f"qwen: SSL_CERT_FILE={ca_file} is this gateway's own CA: ignored for the gateway's "
                            "calls to Qwen (it is for the gateway's clients)")
            ca_file = None
    if insecure:
        warnings.append("qwen: ssl_insecure is on: the certificates of Qwen (and of any proxy inspecting TLS) "
                        "are NOT verified")
    else:
        try:
            tls_context(ca_file, ca_dir, False)
        except (OSError, ssl.SSLError) as e:
            raise NetworkSettingError(f"cannot load the trusted CAs {ca_file or ca_dir}: {e}") from e
    return Network(mode_proxy=mode_proxy, env=tuple(kept), ca_file=ca_file, ca_dir=ca_dir, insecure=insecure,
                   warnings=tuple(warnings))


def _mode_proxy(modes: Sequence[str], upstream_auth: str | None) -> Proxy | None:
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        if isinstance(mode, mode_specs.UpstreamMode):
            if mode.scheme != "http":
                raise NetworkSettingError(f"--mode {mode.full_spec}: the gateway's calls to Qwen go through an http:// "
                                   "proxy only")
            host, port = mode.address
            return Proxy(host, port, "--mode upstream", _basic(upstream_auth) if upstream_auth else None,
                         url=_with_auth(f"http://{_bracket(host)}:{port}", upstream_auth))
    return None


def _proxy(url: str, source: str) -> Proxy:
    parts = urlsplit(url if "://" in url else f"http://{url}")  # curl's default scheme for a bare host:port
    try:
        host, port = parts.hostname or "", parts.port or 80
    except ValueError:  # a port that is no number
        host, port = "", 0
    if parts.scheme != "http" or not host:
        shown = f"{parts.scheme}://{_bracket(host) or '?'}" + (f":{port}" if host else "")
        raise NetworkSettingError(f"{source}={shown}: the gateway's calls to Qwen go through an http:// proxy only "
                           "(http://[user:password@]host:port)")
    auth = None
    if parts.username is not None:
        auth = _basic(f"{unquote(parts.username)}:{unquote(parts.password or '')}")
    return Proxy(host, port, source, auth, url=url if "://" in url else f"http://{url}")


def _basic(userpass: str) -> str:
    return "Basic " + base64.b64encode(userpass.encode()).decode()


def _with_auth(url: str, userpass: str | None) -> str:
    if not userpass:
        return url
    user, _, password = userpass.partition(":")
    return url.replace("://", f"://{quote(user, safe='')}:{quote(password, safe='')}@", 1)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _env_name(proxies: Mapping[str, str], scheme: str) -> str:
    return f"{'ALL' if scheme not in proxies else scheme.upper()}_PROXY"


def _own_listeners(modes: Sequence[str], listen_port: int | None) -> set[int]:
    """Ports where the gateway itself is a proxy for clients (regular and upstream modes)."""
    ports = set()
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        if isinstance(mode, (mode_specs.RegularMode, mode_specs.UpstreamMode)):
            port = mode.listen_port(listen_port)
            if port:
                ports.add(port)
    return ports


def _loopback(host: str) -> set[str]:
    try:
        return {host} if ipaddress.ip_address(host.strip("[]")).is_loopback else set()
    except ValueError:
        return set()
