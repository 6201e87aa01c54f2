"""The console's files as the admin listener serves them (cli/admin_console.py); the page in Chromium:
tests/e2e/test_e2e_console.py."""

from __future__ import annotations

import re

from qwen_gateway.cli import admin_console


def test_the_three_files_are_served_at_their_paths_and_nothing_else():
    html, kind = admin_console.page("/console")
    assert kind.startswith("text/html") and b'<script src="/console/console.js"' in html
    assert admin_console.page("/console/") == (html, kind)
    assert admin_console.page("/console/console.js")[1].startswith("text/javascript")
    assert admin_console.page("/console/console.css")[1].startswith("text/css")
    for other in ("/", "/console/../admin-keys.json", "/console/index.html", "/admin/v1/keys", "/consoles"):
        assert admin_console.page(other) is None, other


def test_the_policy_lets_the_page_load_only_its_own_files_and_call_its_own_origin():
    policy = dict(part.strip().split(" ", 1) for part in admin_console.CSP.split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert "unsafe-inline" not in admin_console.CSP and "unsafe-eval" not in admin_console.CSP
    html = admin_console.page("/console")[0].decode()
    assert not re.search(r"<script>|<style|\sstyle=|\son[a-z]+=", html)  # nothing inline the policy would refuse


def test_what_the_api_answers_reaches_the_page_as_text_never_as_markup():
    script = admin_console.page("/console/console.js")[0].decode()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert not re.search(r"localStorage|sessionStorage|document\.cookie", script)  # the credential: memory only
