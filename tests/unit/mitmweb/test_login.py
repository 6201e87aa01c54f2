"""mitmweb's login kept where its user can read it (mitmweb/login.py), with mitmweb's own WebAuth addon in
mitmproxy's test context. Through a real mitmweb: tests/e2e/test_e2e_what_people_see.py."""

from __future__ import annotations

import logging
import stat

from mitmproxy.test import taddons
from mitmproxy.tools.web.webaddons import WebAuth

from qwen_gateway.mitmweb.login import FILENAME, Login


def web_options(tctx, auth: WebAuth) -> None:
    """mitmweb's WebAddon declares these (it needs a web server to load), as it declares them; then its WebAuth
    (whose commands read its login URL as it is added)."""
    tctx.options.add_option("web_port", int, 8081, "Web UI port.")
    tctx.options.add_option("web_host", str, "127.0.0.1", "Web UI host.")
    tctx.master.addons.add(auth)


def test_the_runs_token_is_written_0600_said_where_and_gone_at_the_stop(tmp_path, caplog):
    auth = WebAuth()
    with taddons.context() as tctx:
        web_options(tctx, auth)
        tctx.configure(auth, web_port=8081, web_host="127.0.0.1")
        login = Login()
        with caplog.at_level(logging.INFO, logger="qwen"):
            login.keep(tctx.master, tmp_path)
        path = tmp_path / FILENAME
        url = path.read_text().strip()
        assert url.startswith("http://127.0.0.1:8081/?token=") and auth.is_valid_password(url.split("token=")[1])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        [said] = caplog.messages
        assert str(path) in said and url.split("token=")[1] not in said
        tctx.configure(auth, web_password="my own")  # the user's password: nothing to keep
        login.keep(tctx.master, tmp_path)
        assert not path.exists()
        tctx.configure(auth, web_password="")
        login.keep(tctx.master, tmp_path)
        assert path.exists()
        login.forget()
        assert not path.exists()


def test_nothing_for_mitmdump(tmp_path):
    with taddons.context() as tctx:
        Login().keep(tctx.master, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_it_cannot_write_says_what_to_do(tmp_path, caplog):
    auth = WebAuth()
    (tmp_path / "file").write_text("")
    with taddons.context() as tctx, caplog.at_level(logging.WARNING, logger="qwen"):
        web_options(tctx, auth)
        tctx.configure(auth, web_port=8081)
        Login().keep(tctx.master, tmp_path / "file" / "state")  # a folder under a file: ENOTDIR
    [said] = caplog.messages
    assert "mitmweb's login could not be written" in said and "web_password" in said
