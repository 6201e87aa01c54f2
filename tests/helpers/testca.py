"""A throwaway certificate authority for tests: a CA and a server certificate for 127.0.0.1 / localhost (or
other names), made with `cryptography` (a dependency of mitmproxy), written as PEM files."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA's certificate: what a client trusts
    cert: Path  # the server's certificate (signed by the CA)
    key: Path  # the server's private key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make(folder: Path, name: str = "qwen-test", hosts: tuple[str, ...] = ("localhost",)) -> Certs:
    """The CA and a server certificate for 127.0.0.1 and the names in `hosts`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name(f"{name} CA")).issuer_name(_name(f"{name} CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([*map(x509.DNSName, hosts),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = Certs(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    out.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return out


def _ec_ca(organization: str, cn: str, key_size: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """mitmproxy's `certs.create_ca` with a P-256 key: the same names and extensions, and a key that loads in
    0.1 ms where a 2048-bit RSA one takes ~50 ms of checks, twice per start (tls config's configure and running)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    cert = (x509.CertificateBuilder().serial_number(x509.random_serial_number()).subject_name(name).issuer_name(name)
            .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=30))
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


@functools.cache
def _mitmproxy_ca() -> Path:
    """This process's mitmproxy CA folder, written once by mitmproxy's own `create_store` (every file, as a first
    start writes them) with a P-256 key; removed when the process ends."""
    import atexit
    import tempfile
    from unittest import mock

    from mitmproxy import certs

    folder = Path(tempfile.mkdtemp(prefix="qwen-test-mitmproxy-ca-"))
    atexit.register(shutil.rmtree, folder, True)
    with mock.patch.object(certs, "create_ca", _ec_ca):
        certs.CertStore.create_store(folder, "mitmproxy", 2048)
    return folder


def seed_mitmproxy_confdir(confdir: Path) -> None:
    """A gateway's confdir given this process's CA: a test gateway's start then neither makes an RSA key nor checks
    one twice (~0.15 s of CPU each start). A confdir that exists is left as it is: a test's own CA, or a restart's."""
    if not confdir.exists():
        shutil.copytree(_mitmproxy_ca(), confdir)
