"""The team's console (docs/admin-api.md#the-console): one page, its script and its style, served by the admin
API's own listener (cli/admin_server.py) at /console. The page holds no data: it asks the admin API for all of
it, with the admin credential typed into it, so the files themselves are served to anyone who can reach the
listener, and everything they show needs the credential. Why the admin listener and not mitmweb's side:
docs/architecture.md#the-admin-api.

The policy lets the page load its own two files and call its own origin, nothing else: no inline script or
style, no frame, no form sent anywhere, no other host."""

from __future__ import annotations

from importlib import resources

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
FILES = {"/console": ("index.html", "text/html; charset=utf-8"),
         "/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
         "/console/console.css": ("console.css", "text/css; charset=utf-8")}
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def page(path: str) -> tuple[bytes, str] | None:
    """The file at `path` and its type, or None when `path` is not one of the console's."""
    found = FILES.get(path.rstrip("/") or "/")
    if found is None:
        return None
    name, kind = found
    return resources.files(__package__).joinpath("console", name).read_bytes(), kind
