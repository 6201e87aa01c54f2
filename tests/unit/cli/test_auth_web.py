"""`qwen-auth add-web`, `status`, `list` and `remove` for Qwen Chat web accounts: in this process (stdin
replaced), and once as the installed command a user runs. Secrets never come from argv and never show in
any output or error."""

from __future__ import annotations

import json
import re
import stat
import subprocess

import pytest

from qwen_gateway.auth import web_session as ws
from qwen_gateway.auth.registry import Registry
from unit.cli.test_auth import entry, run  # noqa: F401  (run: a fixture, the CLI in-process; settings: conftest)
from helpers.qwen_web_auth import HEADER, ITNA, NETSCAPE, PLAYWRIGHT, REFRESH, SECRETS, TOKEN, UA

from helpers.auth_env import CLEAN_ENV
from helpers.procs import BIN, ROOT

BX_UA = "231!bxua-secretish-value"
BX_UMID = "T2gA-umid-secretish-value"


def no_secret(*texts: str) -> bool:
    joined = "".join(texts)
    return all(s not in joined for s in (*SECRETS, BX_UA, BX_UMID))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "cookies.txt").write_text(NETSCAPE)
    (tmp_path / "state.json").write_text(PLAYWRIGHT)
    (tmp_path / "token.txt").write_text(f"Bearer {TOKEN}\n")
    (tmp_path / "bx-ua.txt").write_text(BX_UA + "\n")
    (tmp_path / "bx-umidtoken.txt").write_text(BX_UMID)
    return tmp_path


def test_add_web_from_a_cookies_txt_stores_everything_0600_and_prints_no_secret(run, settings, files):
    rc, out, err = run("add-web", "chat", "--cookies", str(files / "cookies.txt"), "--user-agent", UA,
                       "--bx-ua", str(files / "bx-ua.txt"), "--bx-umidtoken", str(files / "bx-umidtoken.txt"),
                       "--bx-v", "2.5.36")
    assert rc == 0, err
    assert "Added web account chat: 7 qwen.ai cookies from the Netscape cookies.txt (4 for other sites or " \
           "expired left out); token expires in 1" in out and re.search(r"token expires in 1[01] h;", out)
    assert "refresh possible (refresh_token cookie); bx-ua, bx-umidtoken, bx-v; user agent set" in out
    assert "--set qwen_web_accounts=true" in err and "ban" in err and "Web accounts serve chat completions" in err
    path = settings.web_session_path("chat")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    s = ws.load(path)
    assert s.token == TOKEN and s.refresh_token == REFRESH and s.user_agent == UA
    assert s.bx == {"bx-ua": BX_UA, "bx-umidtoken": BX_UMID, "bx-v": "2.5.36"}
    assert Registry(settings).find(Registry(settings).load(), "chat") == {"name": "chat", "kind": "web"}
    assert no_secret(out, err)


def test_add_web_from_a_playwright_state_uses_its_localstorage_token(run, settings, files):
    rc, out, err = run("add-web", "pw", "--cookies", str(files / "state.json"), "--user-agent", UA)
    assert rc == 0, err
    assert "3 qwen.ai cookies from the Playwright storageState (1 for other sites or expired left out)" in out
    assert ws.load(settings.web_session_path("pw")).token == TOKEN and no_secret(out, err)


def test_add_web_from_a_pasted_header_on_stdin_and_a_token_file(run, settings, files):
    rc, out, err = run("add-web", "hdr", "--cookie-header", "-", "--token", str(files / "token.txt"), stdin=HEADER)
    assert rc == 0, err
    s = ws.load(settings.web_session_path("hdr"))
    assert s.token == TOKEN and s.refresh_token == REFRESH  # `Bearer ` taken off
    assert "Warning: no --user-agent" in err and no_secret(out, err)


def test_bx_headers_come_from_a_file_or_standard_input_never_the_command_line(run, settings, files):
    """They are Baxia's tokens of the browser's session: secrets like the token (`ps`, the shell history)."""
    rc, out, err = run("add-web", "chat", "--cookies", str(files / "cookies.txt"), "--bx-ua", "-",
                       "--bx-umidtoken", str(files / "bx-umidtoken.txt"), stdin=BX_UA + "\n")
    assert rc == 0, err
    assert ws.load(settings.web_session_path("chat")).bx == {"bx-ua": BX_UA, "bx-umidtoken": BX_UMID}
    assert no_secret(out, err)


def test_add_web_with_only_a_token_on_stdin_warns_about_the_missing_jar(run, settings):
    rc, out, err = run("add-web", "bare", "--token", "-", "--user-agent", UA, stdin=TOKEN + "\n")
    assert rc == 0, err
    assert "0 qwen.ai cookies" in out and "refresh impossible (no refresh_token cookie)" in out
    assert "Warning: no cookie jar" in err and no_secret(out, err)


@pytest.mark.parametrize("args, stdin, says", [
    (("--token", TOKEN), "", "--token takes - (standard input) or a FILE holding it, never the value itself"),
    (("--cookie-header", f"token={TOKEN}"), "", "--cookie-header takes - (standard input) or a FILE"),
    (("--token", "-", "--cookie-header", "-"), "", "cannot both read standard input"),
    (("--cookie-header", "-"), f"ssxmod_itna={ITNA}", "no token: the cookies hold no `token` cookie"),
    ((), "", "no token: the cookies hold no `token` cookie (none given). Give the session's token with --token -"),
    (("--token", "-"), "  \n", "--token: nothing to read"),
    (("--cookie-header", "-", "--token", "-"), "", "cannot both"),
    (("--token", "-", "--bx-ua", BX_UA), TOKEN, "--bx-ua takes - (standard input) or a FILE holding it, never the "
                                               "value itself"),
    (("--token", "-", "--bx-umidtoken", BX_UMID), TOKEN, "--bx-umidtoken takes - (standard input) or a FILE"),
    (("--token", "-", "--bx-ua", "-"), TOKEN, "--token and --bx-ua cannot both read standard input"),
])
def test_add_web_refusals_name_what_is_missing_and_never_echo_a_secret(run, settings, args, stdin, says):
    rc, out, err = run("add-web", "chat", *args, stdin=stdin)
    assert rc == 1 and says in err and no_secret(out, err)
    assert not settings.web_session_path("chat").exists()


def test_a_cookie_file_without_qwen_cookies_or_in_no_known_format(run, files):
    (files / "other.txt").write_text(f".google.com\tTRUE\t/\tTRUE\t0\tNID\t{TOKEN}\n")
    rc, _, err = run("add-web", "chat", "--cookies", str(files / "other.txt"))
    assert rc == 1 and "no usable qwen.ai cookie in the Netscape cookies.txt (1 cookies for other sites" in err
    (files / "notes.txt").write_text(f"my token is {TOKEN}\n")
    rc, _, err = run("add-web", "chat", "--cookies", str(files / "notes.txt"))
    assert rc == 1 and "not a cookie export" in err and TOKEN not in err
    rc, _, err = run("add-web", "chat", "--cookies", str(files / "absent.txt"))
    assert rc == 1 and "cannot read" in err


def test_replace_and_name_conflicts(run, settings, files):
    assert run("add-web", "chat", "--cookies", str(files / "cookies.txt"))[0] == 0
    rc, _, err = run("add-web", "chat", "--cookies", str(files / "state.json"))
    assert rc == 1 and "add --replace" in err
    rc, out, _ = run("add-web", "chat", "--replace", "--cookies", str(files / "state.json"))
    assert rc == 0 and out.startswith("Replaced web account chat: 3 qwen.ai cookies")
    assert run("add-key", "k", "--base-url", "http://127.0.0.1:9/v1", "--key-env", "K")[0] == 0
    rc, _, err = run("add-web", "k", "--cookies", str(files / "cookies.txt"))
    assert rc == 1 and "already exists as a key account" in err
    rc, _, err = run("add-web", "default", "--cookies", str(files / "cookies.txt"))
    assert rc == 1 and "'default'" in err


def test_status_and_list_show_web_accounts_without_secrets(run, files):
    run("add-web", "chat", "--cookies", str(files / "cookies.txt"), "--user-agent", UA, "--bx-ua",
        str(files / "bx-ua.txt"))
    rc, out, err = run("status")
    assert rc == 0, err
    row = next(ln for ln in out.splitlines() if ln.startswith("chat "))
    assert row.split()[:4] == ["chat", "web", "qwenweb", "disabled"] and "https://chat.qwen.ai" in row
    assert re.search(r"^  chat: web session ok; token expires in 1[01] h; refresh possible; last punish never; "
                     r"7 cookies; bx-ua; user agent set$", out, re.M)
    assert "Web accounts are off in qwen-auth's view: The gateway uses them only with --set " \
           "qwen_web_accounts=true." in out
    rc, js, _ = run("status", "--json")
    r = json.loads(js)[0]
    assert (r["state"], r["session"], r["refresh"], r["last_punish"], r["cooldown_until"]) == (
        "disabled", "ok", "possible", None, None)
    assert r["last_error"].startswith("disabled: --set qwen_web_accounts=true")
    rc, listed, _ = run("list")
    assert "chat  web   disabled" in listed
    assert no_secret(out, js, listed, err)


def test_an_account_added_against_another_web_api_keeps_it(run, settings, files, monkeypatch):
    """Issue 32: an account imported with QWEN_WEB_BASE_URL naming the emulator showed https://chat.qwen.ai in
    `qwen-auth status` from any shell without the variable, and a gateway started without it sent the account's
    requests there. The account keeps the web API (and the refresh server) it was added for."""
    monkeypatch.setenv("QWEN_WEB_BASE_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("QWEN_WEB_AUTH_BASE_URL", "http://127.0.0.1:9999")
    rc, out, err = run("add-web", "chat", "--cookies", str(files / "cookies.txt"), "--user-agent", UA)
    assert rc == 0, err
    assert "upstream http://127.0.0.1:9999" in out
    assert entry(settings, "chat") == {"name": "chat", "kind": "web", "base_url": "http://127.0.0.1:9999",
                                       "auth_base_url": "http://127.0.0.1:9999"}
    monkeypatch.delenv("QWEN_WEB_BASE_URL")
    monkeypatch.delenv("QWEN_WEB_AUTH_BASE_URL")
    rc, out, err = run("status")
    row = next(ln for ln in out.splitlines() if ln.startswith("chat "))
    assert row.split()[-1] == "http://127.0.0.1:9999", out
    from qwen_gateway.auth.state import AccountState
    from qwen_gateway.auth.web_account import WebAccount
    acct = Registry(settings)._build(entry(settings, "chat"), AccountState(settings.state_db_path))
    assert isinstance(acct, WebAccount) and acct.auth_base_url == "http://127.0.0.1:9999"


def test_remove_keeps_the_session_file_unless_forced(run, settings, files):
    run("add-web", "chat", "--cookies", str(files / "cookies.txt"))
    path = settings.web_session_path("chat")
    rc, out, _ = run("remove", "chat")
    assert rc == 0 and f"Its session file {path} is kept (--force deletes it)." in out and path.exists()
    run("add-web", "chat", "--cookies", str(files / "cookies.txt"))
    rc, out, _ = run("remove", "chat", "--force")
    assert rc == 0 and "Deleted chat.json" in out and not path.exists()


def test_the_installed_command_round_trip(tmp_path, files):
    """As a user runs it: the token piped in, the jar from a file; then status. Nothing secret anywhere."""
    base = [str(BIN / "qwen-auth"), "--qwen-dir", str(tmp_path / ".qwen"), "--state-dir", str(tmp_path / "state")]
    cookies = tmp_path / "jar.txt"
    cookies.write_text("\n".join(ln for ln in NETSCAPE.splitlines() if "\ttoken\t" not in ln))
    add = subprocess.run([*base, "add-web", "chat", "--cookies", str(cookies), "--token", "-", "--user-agent", UA],
                         input=TOKEN, capture_output=True, text=True, cwd=ROOT, env=CLEAN_ENV, timeout=60)
    assert add.returncode == 0, add.stderr
    status = subprocess.run([*base, "status"], capture_output=True, text=True, cwd=ROOT, env=CLEAN_ENV, timeout=60)
    assert status.returncode == 0 and "chat     web   qwenweb   disabled" in status.stdout
    assert ws.load(tmp_path / "state" / "web" / "chat.json").token == TOKEN
    assert no_secret(add.stdout, add.stderr, status.stdout, status.stderr)
