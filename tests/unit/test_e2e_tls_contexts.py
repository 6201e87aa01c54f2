"""tests/helpers/tls_contexts.py: the tests' httpx clients share the TLS context httpx would make for them."""

from __future__ import annotations

import ssl

import httpx

from helpers import tls_contexts


def context(client: httpx.Client) -> ssl.SSLContext:
    return client._transport._pool._ssl_context  # type: ignore[attr-defined]


def test_clients_of_the_same_settings_share_one_context_and_verify_as_httpx_does(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with httpx.Client(trust_env=False) as a, httpx.Client(trust_env=False) as b, \
            httpx.Client(trust_env=False, verify=False) as unverified:
        assert context(a) is context(b)
        assert context(a).verify_mode == ssl.CERT_REQUIRED and context(a).check_hostname
        assert context(unverified) is not context(a) and context(unverified).verify_mode == ssl.CERT_NONE


def test_a_trusting_client_reads_ssl_cert_file_as_it_is_when_built(monkeypatch, tmp_path):
    from helpers import testca
    certs = testca.make(tmp_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with httpx.Client() as plain:
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
        with httpx.Client() as told, httpx.Client(trust_env=False) as untrusting:
            assert context(told) is not context(plain)
            assert context(untrusting) is tls_contexts.shared_context(True, None, False)
            assert len(context(told).get_ca_certs()) == 1  # the test CA alone, as httpx loads it


def test_a_context_the_test_gives_is_its_own():
    own = ssl.create_default_context()
    with httpx.Client(verify=own) as client:
        assert context(client) is own
