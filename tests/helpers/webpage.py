"""Test-only HTTPS web site: serves one page (its HTML from a file) at every path, over TLS with the given
certificate, and appends `METHOD PATH` to a log for every request. Run inside a test's network namespace:

    python webpage.py --listen 127.0.0.6:443 --cert server.pem --key server-key.pem --page page.html --log log
"""

from __future__ import annotations

import argparse
import http.server
import ssl
import sys
import threading
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--page", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ready", required=True)
    a = p.parse_args()
    page = Path(a.page).read_bytes()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock, open(a.log, "a") as f:
                f.write(f"GET {self.path}\n")
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    host, port = a.listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(a.cert, a.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Path(a.log).touch()
    Path(a.ready).write_text("ready")
    server.serve_forever()  # until `timeout` ends the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
