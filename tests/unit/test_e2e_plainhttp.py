"""tests/helpers/plainhttp.py: a sweep's client keeps one connection, and opens another once the server closed it."""

from __future__ import annotations

import http.server
import json
import threading

from helpers.plainhttp import Plain


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive unless the request says otherwise

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        answer = json.dumps({"port": self.client_address[1], "got": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(answer)))
        if self.path == "/close":
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def test_one_connection_for_many_requests_and_a_new_one_after_a_close():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Plain(f"http://127.0.0.1:{server.server_port}")
        answers = [client.post("/", {"n": n}) for n in range(3)]
        assert [a[0] for a in answers] == [200] * 3
        ports = {json.loads(a[1])["port"] for a in answers}
        assert len(ports) == 1 and json.loads(answers[2][1])["got"] == {"n": 2}
        status, closing = client.post("/close", {"n": 3})
        assert status == 200 and json.loads(closing)["port"] in ports
        after = json.loads(client.post("/", {"n": 4})[1])["port"]
        assert after not in ports
        client.close()
    finally:
        server.shutdown()
        server.server_close()
