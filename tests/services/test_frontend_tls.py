"""The frontend image as an edge terminator: TLS, client certificates, hidden API routes and
the live upstream switch, run hardened as the catalogue runs it, on 127.0.0.1 ports.

The certificates are a throwaway CA made here with `cryptography` (a server certificate for
127.0.0.1/localhost that names the CA's CRL as roles/mlops/tasks/pki.yml has it, a client
certificate, a revoked one, and a client certificate of another CA), with the CA's CRL as
ca.crl beside ca.crt, where Ansible puts it. The
upstream is a small echo server in the API image's Python that answers with its name, the
path it received and every header it was sent: what the API would see. testssl.sh (Debian's
`testssl.sh` package) scans the HTTPS port; its JSON report goes to artifacts/.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    API_IMAGE,
    API_RUN,
    ARTIFACTS,
    FRONTEND_DIR,
    FRONTEND_IMAGE,
    FRONTEND_RUN,
    Container,
    Docker,
    docker,
    wait_for,
)

pytestmark = pytest.mark.docker

TLS_DIR = "/etc/mlops-frontend/tls"  # where Ansible mounts the certificate material
LIVE_DIR = "/etc/mlops-frontend/live"  # where Ansible mounts the live upstream directory
HSTS = "max-age=63072000"
CRL_PATH = "/crl/site-ca.crl"  # where the frontend serves the site CA's CRL
# The CRL distribution point the test server certificate names (pki.yml: the host's frontend).
CDP_URL = f"http://127.0.0.1:8080{CRL_PATH}"
# The headers every response carries, from the one file both servers include.
SECURITY_HEADERS = [
    line.split()[1].lower()
    for line in (FRONTEND_DIR / "security-headers.conf").read_text().splitlines()
    if line.startswith("add_header ")
]

# The upstream: a threaded echo server, with /api/slow?seconds=N to hold a request open.
ECHO = r"""
import json, os, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/slow":
            time.sleep(float(urllib.parse.parse_qs(url.query).get("seconds", ["3"])[0]))
        body = json.dumps({"name": os.environ["ECHO_NAME"], "path": self.path,
                           "headers": [[k, v] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", 8000), Echo).serve_forever()
"""


# ---------------------------------------------------------------- certificates


@dataclass
class Pki:
    """A throwaway CA and what it signed, as PEM files in `dir` (mounted at TLS_DIR)."""

    dir: Path
    ca: Path  # the site CA
    cert: Path  # server certificate for 127.0.0.1 and localhost
    key: Path
    client_cert: Path  # signed by the site CA
    client_key: Path
    rogue_cert: Path  # a client certificate of another CA
    rogue_key: Path
    ca_pair: tuple[Any, Any]  # the CA's certificate and key, to sign renewed server certificates
    crl: Path  # the site CA's CRL (PEM), revoking revoked_cert
    revoked_cert: Path  # a client certificate of the site CA, on its CRL
    revoked_serial: int

    def container_path(self, path: Path) -> str:
        return f"{TLS_DIR}/{path.name}"


def _issue(
    cn: str, issuer: tuple[Any, Any] | None, *, ca: bool = False, usage: str = "", days: int = 365, cdp: str = ""
) -> tuple[Any, Any]:
    """(certificate, key): self-signed when issuer is None, else signed by issuer=(cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlops test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    flags = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    if ca:
        usage_ext = x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **flags)
    else:
        usage_ext = x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **flags)
        eku = ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    builder = builder.add_extension(usage_ext, critical=True)
    if usage == "server":
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if cdp:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(cdp)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def write_crl(path: Path, ca: tuple[Any, Any], revoked: list[int], *, days: int = 30) -> None:
    """The CA's CRL revoking `revoked` (serial numbers), PEM, as pki.yml signs it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca[0].subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=days))
    )
    for serial in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        builder = builder.add_revoked_certificate(entry)
    path.write_bytes(builder.sign(ca[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _write(path: Path, cert: Any, key: Any | None = None) -> None:
    """PEM certificate (and key beside it, *.key), modes as Ansible writes them: the key
    readable by group 101 (nginx) only when the test runs as root, else by everyone."""
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    if key is not None:
        key_path = path.with_suffix(".key")
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        if os.geteuid() == 0:
            os.chown(key_path, 0, 101)
            key_path.chmod(0o440)
        else:
            key_path.chmod(0o644)


def renew_server_certificate(pki: Pki) -> str:
    """A new server certificate (and key) in place of pki.cert; its serial, in hex."""
    cert, key = _issue("localhost", pki.ca_pair, usage="server", cdp=CDP_URL)
    _write(pki.cert, cert, key)
    return f"{cert.serial_number:X}"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    root = Path(tempfile.mkdtemp(prefix="mlops-frontend-tls-"))
    root.chmod(0o755)  # uid 101 in the container walks into it
    try:
        ca = _issue("mlops test site CA", None, ca=True)
        rogue_ca = _issue("someone else's CA", None, ca=True)
        _write(root / "ca.crt", ca[0])
        _write(root / "tls.crt", *_issue("localhost", ca, usage="server", cdp=CDP_URL))
        _write(root / "client.crt", *_issue("test-client", ca, usage="client"))
        _write(root / "rogue.crt", *_issue("test-client", rogue_ca, usage="client"))
        revoked = _issue("revoked-client", ca, usage="client")
        _write(root / "revoked.crt", *revoked)
        write_crl(root / "ca.crl", ca, [revoked[0].serial_number])
        yield Pki(
            root,
            root / "ca.crt",
            root / "tls.crt",
            root / "tls.key",
            root / "client.crt",
            root / "client.key",
            root / "rogue.crt",
            root / "rogue.key",
            ca,
            root / "ca.crl",
            root / "revoked.crt",
            revoked[0].serial_number,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- containers and requests


@pytest.fixture(scope="session")
def frontend_image(images: dict[str, str]) -> str:
    """The frontend image, built with the API image (the echo upstream runs in it) by the
    services' shared `images` fixture (conftest.py)."""
    return images["frontend"]


@pytest.fixture
def fdock(frontend_image: str) -> Iterator[Docker]:
    d = Docker()
    try:
        yield d
    finally:
        d.cleanup()


def echo(dock: Docker, net: str, name: str) -> Container:
    """An echo upstream named `name`, reachable on `net` as upstream-<name>:8000."""
    return dock.run(
        API_IMAGE,
        *API_RUN,
        *("--network", net, "--network-alias", f"upstream-{name}", "-e", f"ECHO_NAME={name}"),
        command=("python3", "-c", ECHO),
    )


def tls_options(pki: Pki, *, client_ca: bool = False) -> list[str]:
    options = ["-v", f"{pki.dir}:{TLS_DIR}:ro"]
    options += [
        "-e",
        f"TLS_CERT_FILE={pki.container_path(pki.cert)}",
        "-e",
        f"TLS_KEY_FILE={pki.container_path(pki.key)}",
    ]
    if client_ca:
        options += ["-e", f"TLS_CLIENT_CA_FILE={pki.container_path(pki.ca)}"]
    return options


def frontend(dock: Docker, *options: str) -> Container:
    """The frontend, hardened, with 8080 and 8443 published on loopback; started when its
    plain-HTTP /health answers."""
    fe = dock.run(FRONTEND_IMAGE, *FRONTEND_RUN, *options, ports=(8080, 8443))
    try:
        wait_for(fe.url(8080, "/health"), timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fe.logs()}") from None
    return fe


def client_context(pki: Pki, *, cert: Path | None = None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
    if version is not None:
        with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated names: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer what the server must refuse
    return ctx


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def upstream(self) -> dict[str, Any]:
        """What the echo upstream saw: name, path, headers (lower-case name -> values)."""
        doc = json.loads(self.body)
        seen: dict[str, list[str]] = {}
        for name, value in doc["headers"]:
            seen.setdefault(name.lower(), []).append(value)
        return {"name": doc["name"], "path": doc["path"], "headers": seen}


def request(
    port: int, path: str, *, ctx: ssl.SSLContext | None = None, headers: list[tuple[str, str]] | tuple = ()
) -> Answer:
    """One GET, path sent exactly as given, headers in order (repeats allowed); no redirect followed."""
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=ctx)
    try:
        names = {name.lower() for name, _ in headers}
        conn.putrequest("GET", path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def served_by_nginx_404(answer: Answer) -> bool:
    return answer.status == 404 and b"<center>nginx</center>" in answer.body


# ---------------------------------------------------------------- HTTPS and plain HTTP


def test_https_serves_the_site_certificate_with_hsts_and_every_security_header(fdock: Docker, pki: Pki) -> None:
    net = fdock.network()
    echo(fdock, net, "a")
    fe = frontend(fdock, "--network", net, "-e", "API_UPSTREAM=http://upstream-a:8000", *tls_options(pki))
    port = fe.ports[8443]
    ctx = client_context(pki)

    page = request(port, "/", ctx=ctx)
    assert page.status == 200 and b'id="predict-form"' in page.body
    for answer in (page, request(port, "/health", ctx=ctx), request(port, "/nope", ctx=ctx)):
        assert answer.headers.get("strict-transport-security") == HSTS, answer.headers
        missing = [h for h in SECURITY_HEADERS if h not in answer.headers]
        assert not missing, f"{answer.status}: missing {missing}"
    assert request(port, "/health", ctx=ctx).body == b'{"status":"ok"}\n'

    # /api/ reaches the upstream over the TLS connection, query string included.
    seen = request(port, "/api/predict-ish?patient=1", ctx=ctx).upstream()
    assert seen["name"] == "a" and seen["path"] == "/api/predict-ish?patient=1"
    assert seen["headers"]["x-forwarded-proto"] == ["https"]

    # The certificate is the site CA's, not one a default trust store knows.
    with pytest.raises(ssl.SSLCertVerificationError):
        request(port, "/", ctx=ssl.create_default_context())

    # The access log: the TLS version, no query string.
    deadline = time.monotonic() + 10
    while '"path":"/api/predict-ish"' not in fe.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = [json.loads(line) for line in fe.logs().splitlines() if line.startswith('{"ts"')]
    api_lines = [line for line in lines if line["path"] == "/api/predict-ish"]
    assert api_lines and api_lines[0]["tls"] in ("TLSv1.2", "TLSv1.3"), lines
    assert "patient=1" not in fe.logs()


def test_plain_http_answers_health_and_redirects_everything_else_to_https(fdock: Docker, pki: Pki) -> None:
    fe = frontend(fdock, *tls_options(pki))
    port = fe.ports[8080]
    health = request(port, "/health")
    assert health.status == 200 and health.body == b'{"status":"ok"}\n'
    assert "strict-transport-security" not in health.headers  # HSTS over plain HTTP means nothing
    assert all(h in health.headers for h in SECURITY_HEADERS), health.headers

    for path in ("/", "/api/predict?x=1", "/api/metrics", "/index.html"):
        answer = request(port, path)
        assert answer.status == 301, (path, answer.status)
        assert answer.headers["location"] == f"https://127.0.0.1:8443{path}"
        assert "strict-transport-security" not in answer.headers
        assert all(h in answer.headers for h in SECURITY_HEADERS)
    answer = request(port, "/x", headers=[("Host", "mlops.example:8080")])
    assert answer.headers["location"] == "https://mlops.example:8443/x"

    # The image's healthcheck keeps probing plain HTTP, so it holds in TLS mode as well.
    probe = json.loads(docker("inspect", "-f", "{{json .Config.Healthcheck.Test}}", fe.name).stdout)[1:]
    assert docker("exec", fe.name, *probe, check=False).returncode == 0

    # Behind a published 443 (TLS_PUBLIC_PORT), the redirect names no port.
    fe443 = frontend(fdock, *tls_options(pki), "-e", "TLS_PUBLIC_PORT=443")
    assert request(fe443.ports[8080], "/a?b").headers["location"] == "https://127.0.0.1/a?b"


def test_only_tls_1_2_and_1_3_with_ecdhe_aead_ciphers_are_accepted(fdock: Docker, pki: Pki) -> None:
    fe = frontend(fdock, *tls_options(pki))
    port = fe.ports[8443]

    def handshake(ctx: ssl.SSLContext) -> tuple[str | None, tuple[str, str, int] | None]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version(), tls.cipher()

    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(client_context(pki, version=old))
        # The server said no (protocol_version alert), not this client.
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value

    version, cipher = handshake(client_context(pki, version=ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2" and cipher is not None
    assert cipher[0].startswith("ECDHE-") and ("GCM" in cipher[0] or "CHACHA20" in cipher[0]), cipher
    version, _ = handshake(client_context(pki, version=ssl.TLSVersion.TLSv1_3))
    assert version == "TLSv1.3"

    # TLS 1.2 with CBC or without ECDHE: refused.
    for suites in (
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA",
        "AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256",
    ):
        ctx = client_context(pki, version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(suites)
        with pytest.raises(ssl.SSLError):
            handshake(ctx)


def test_the_tls_settings_are_checked_before_nginx_starts(frontend_image: str, pki: Pki) -> None:
    def check(*options: str) -> subprocess.CompletedProcess[str]:
        return docker(
            "run",
            "--rm",
            *FRONTEND_RUN,
            "-v",
            f"{pki.dir}:{TLS_DIR}:ro",
            *options,
            FRONTEND_IMAGE,
            "check",
            check=False,
        )

    cert = f"TLS_CERT_FILE={pki.container_path(pki.cert)}"
    key = f"TLS_KEY_FILE={pki.container_path(pki.key)}"
    ca = f"TLS_CLIENT_CA_FILE={pki.container_path(pki.ca)}"
    ok = check("-e", cert, "-e", key, "-e", ca)
    assert ok.returncode == 0 and "test is successful" in ok.stderr, ok.stderr
    assert "HTTPS on port 8443" in ok.stderr
    # The CRL beside ca.crt is taken without being named (that is where Ansible puts it).
    assert f"{CRL_PATH} from {TLS_DIR}/ca.crl" in ok.stderr, ok.stderr

    for options, words in (
        (("-e", cert), ("TLS_CERT_FILE", "TLS_KEY_FILE")),
        (("-e", key), ("TLS_CERT_FILE", "TLS_KEY_FILE")),
        (("-e", ca), ("TLS_CLIENT_CA_FILE",)),
        (("-e", cert, "-e", f"TLS_KEY_FILE={TLS_DIR}/missing.key"), ("TLS_KEY_FILE", "missing.key")),
        (("-e", cert, "-e", key, "-e", "TLS_PORT=8080"), ("TLS_PORT", "LISTEN_PORT")),
        (("-e", cert, "-e", key, "-e", "TLS_PORT=70000"), ("TLS_PORT",)),
        (("-e", "EXPOSE_API_DOCS=maybe"), ("EXPOSE_API_DOCS",)),
        (("-e", "EXPOSE_API_METRICS=2"), ("EXPOSE_API_METRICS",)),
        (("-e", "API_UPSTREAM=http://api:99999"), ("API_UPSTREAM",)),
        # A CRL that is named must be there, and be one.
        (("-e", cert, "-e", key, "-e", f"TLS_CRL_FILE={TLS_DIR}/missing.crl"), ("TLS_CRL_FILE", "missing.crl")),
        (("-e", cert, "-e", key, "-e", f"TLS_CRL_FILE={pki.container_path(pki.ca)}"), ("TLS_CRL_FILE", "PEM CRL")),
    ):
        run = check(*options)
        assert run.returncode == 2, (options, run.stderr)
        assert all(word in run.stderr for word in words), (options, run.stderr)

    # A key the container's user cannot read is named before nginx fails on it.
    if os.geteuid() == 0:
        secret = pki.dir / "root-only.key"
        shutil.copy(pki.key, secret)
        secret.chmod(0o600)
        os.chown(secret, 0, 0)
        run = check("-e", cert, "-e", f"TLS_KEY_FILE={TLS_DIR}/root-only.key")
        assert run.returncode == 2 and "TLS_KEY_FILE" in run.stderr and "uid 101" in run.stderr, run.stderr

    # Without TLS variables: plain HTTP, as before (Kubernetes terminates TLS at the Ingress).
    plain = check()
    assert plain.returncode == 0 and "frontend: port 8080," in plain.stderr, plain.stderr
    # `reload` where no nginx runs refuses and says so.
    run = docker("run", "--rm", *FRONTEND_RUN, FRONTEND_IMAGE, "reload", check=False)
    assert run.returncode == 1 and "no nginx runs" in run.stderr, run.stderr


# ---------------------------------------------------------------- client identity headers


FORGED = [
    ("X-Client-Verify", "SUCCESS"),
    ("X-Client-DN", "CN=admin,O=hospital"),
    ("x-client-verify", "SUCCESS"),
    ("X-CLIENT-DN", "CN=root"),
]


def test_a_client_cannot_forge_the_client_certificate_headers(fdock: Docker, pki: Pki) -> None:
    net = fdock.network()
    echo(fdock, net, "a")
    up = ("--network", net, "-e", "API_UPSTREAM=http://upstream-a:8000")
    plain = frontend(fdock, *up)
    tls = frontend(fdock, *up, *tls_options(pki))
    mtls = frontend(fdock, *up, *tls_options(pki, client_ca=True))
    ctx = client_context(pki)
    for answer in (
        request(plain.ports[8080], "/api/whoami", headers=FORGED),
        request(tls.ports[8443], "/api/whoami", ctx=ctx, headers=FORGED),
        request(mtls.ports[8443], "/api/whoami", ctx=ctx, headers=FORGED),
    ):
        seen = answer.upstream()["headers"]
        assert seen["x-client-verify"] == ["NONE"], seen
        assert "x-client-dn" not in seen, seen


def test_client_certificates_of_the_site_ca_are_verified_and_named(fdock: Docker, pki: Pki) -> None:
    net = fdock.network()
    echo(fdock, net, "a")
    fe = frontend(
        fdock, "--network", net, "-e", "API_UPSTREAM=http://upstream-a:8000", *tls_options(pki, client_ca=True)
    )
    port = fe.ports[8443]

    seen = request(port, "/api/whoami", ctx=client_context(pki, cert=pki.client_cert), headers=FORGED).upstream()
    assert seen["headers"]["x-client-verify"] == ["SUCCESS"], seen
    assert seen["headers"]["x-client-dn"] == ["CN=test-client,O=mlops test"], (
        seen
    )  # the certificate's, not the forged one

    seen = request(port, "/api/whoami", ctx=client_context(pki)).upstream()
    assert seen["headers"]["x-client-verify"] == ["NONE"] and "x-client-dn" not in seen["headers"], seen

    # A certificate of another CA, or one of the site CA that its CRL revokes: nginx answers
    # 400 itself, the API never sees the request.
    rogue = request(port, "/api/whoami", ctx=client_context(pki, cert=pki.rogue_cert))
    assert rogue.status == 400 and b"certificate" in rogue.body.lower(), rogue.body
    revoked = request(port, "/api/whoami", ctx=client_context(pki, cert=pki.revoked_cert))
    assert revoked.status == 400 and b"certificate" in revoked.body.lower(), revoked.body
    # The UI and /health need no certificate.
    assert request(port, "/", ctx=client_context(pki)).status == 200


# ---------------------------------------------------------------- the site CA's CRL


def check_crl(answer: Answer, pki: Pki, revoked: set[int]) -> Any:
    """The answer is the site CA's CRL, in DER, signed by the CA, revoking exactly `revoked`."""
    from cryptography import x509

    assert answer.status == 200, (answer.status, answer.headers, answer.body[:200])
    assert answer.headers["content-type"] == "application/pkix-crl", answer.headers
    crl = x509.load_der_x509_crl(answer.body)  # DER, as RFC 5280 wants at an HTTP URI
    assert crl.is_signature_valid(pki.ca_pair[0].public_key())
    assert crl.issuer == pki.ca_pair[0].subject
    assert {entry.serial_number for entry in crl} == revoked
    assert crl.next_update_utc is not None and crl.next_update_utc > datetime.datetime.now(datetime.UTC)
    return crl


def test_the_site_ca_crl_is_served_on_plain_http_where_the_certificate_says(fdock: Docker, pki: Pki) -> None:
    from cryptography import x509

    # The CRL distribution point of the server certificate is this path on the plain port.
    cert = x509.load_pem_x509_certificate(pki.cert.read_bytes())
    (point,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name is not None and point.full_name[0].value == CDP_URL

    fe = frontend(fdock, *tls_options(pki))
    answer = request(fe.ports[8080], CRL_PATH)  # plain HTTP, not redirected to HTTPS
    check_crl(answer, pki, {pki.revoked_serial})
    assert "strict-transport-security" not in answer.headers
    assert all(h in answer.headers for h in SECURITY_HEADERS), answer.headers
    # What Ansible delivered, decoded from PEM: the same CRL, byte for byte.
    from cryptography.hazmat.primitives import serialization

    pem = x509.load_pem_x509_crl(pki.crl.read_bytes())
    assert answer.body == pem.public_bytes(serialization.Encoding.DER)
    # Everything else on plain HTTP is still redirected.
    assert request(fe.ports[8080], "/crl/other.crl").status == 301

    # Plain HTTP only (TLS ends before the frontend): served there too; without a CRL, none.
    plain = frontend(fdock, "-v", f"{pki.dir}:{TLS_DIR}:ro")
    check_crl(request(plain.ports[8080], CRL_PATH), pki, {pki.revoked_serial})
    bare = frontend(fdock)
    assert served_by_nginx_404(request(bare.ports[8080], CRL_PATH))


def _own_copy(pki: Pki) -> Path:
    """A copy of the PKI directory a test may change, keys readable by the container's user."""
    root = Path(tempfile.mkdtemp(prefix="mlops-frontend-crl-"))
    root.chmod(0o755)
    for path in pki.dir.iterdir():
        if path.is_file():
            shutil.copy(path, root / path.name)
            if path.suffix == ".key" and os.geteuid() == 0:
                os.chown(root / path.name, 0, 101)
    return root


def test_a_reload_takes_a_new_crl_for_client_certificates_and_for_its_url(fdock: Docker, pki: Pki) -> None:
    net = fdock.network()
    echo(fdock, net, "a")
    own = _own_copy(pki)
    try:
        write_crl(own / "ca.crl", pki.ca_pair, [])  # nothing revoked yet
        fe = frontend(
            fdock,
            *("--network", net, "-e", "API_UPSTREAM=http://upstream-a:8000"),
            *tls_options(dataclasses.replace(pki, dir=own), client_ca=True),
        )
        port = fe.ports[8443]
        client = client_context(pki, cert=own / "revoked.crt")

        def verdict() -> object:
            answer = request(port, "/api/whoami", ctx=client)
            return answer.status if answer.status != 200 else answer.upstream()["headers"]["x-client-verify"][0]

        assert verdict() == "SUCCESS"
        check_crl(request(fe.ports[8080], CRL_PATH), pki, set())

        # The CA revokes it; Ansible writes the new ca.crl and runs the reload handler.
        write_crl(own / "ca.crl", pki.ca_pair, [pki.revoked_serial])
        run = reload(fe)
        assert run.returncode == 0, run.stderr
        assert verdict() == 400
        check_crl(request(fe.ports[8080], CRL_PATH), pki, {pki.revoked_serial})
        # The valid client certificate still passes.
        ok = request(port, "/api/whoami", ctx=client_context(pki, cert=pki.client_cert)).upstream()
        assert ok["headers"]["x-client-verify"] == ["SUCCESS"], ok

        # A file that is no CRL: refused, the running configuration and the served CRL stay.
        (own / "ca.crl").write_text("-----BEGIN X509 CRL-----\nnot base64 !\n-----END X509 CRL-----\n")
        run = reload(fe)
        assert run.returncode == 2 and "TLS_CRL_FILE" in run.stderr and "left untouched" in run.stderr, run.stderr
        assert verdict() == 400
        check_crl(request(fe.ports[8080], CRL_PATH), pki, {pki.revoked_serial})
    finally:
        shutil.rmtree(own, ignore_errors=True)


# ---------------------------------------------------------------- API docs and metrics


HIDDEN = {
    "docs": [
        "/api/docs",
        "/api/docs/",
        "/api/docs/swagger-init.js",
        "/api/openapi.json",
        "/api/openapi.json?x=1",
        "/api/static/swagger/swagger-ui.css",
        "/api//docs",
        "/api/%64ocs",
    ],
    "metrics": [
        "/api/metrics",
        "/api/metrics/",
        "/api/metrics?format=prometheus",
        "/api//metrics",
        "/api/./metrics",
        "/api/x/../metrics",
        "/api/%6detrics",
        "/api/metrics%2F",
    ],
}


def test_api_docs_and_metrics_are_not_public_by_default(fdock: Docker) -> None:
    net = fdock.network()
    echo(fdock, net, "a")
    up = ("--network", net, "-e", "API_UPSTREAM=http://upstream-a:8000")
    fe = frontend(fdock, *up)
    port = fe.ports[8080]
    assert request(port, "/api/health").upstream()["name"] == "a"  # the rest of /api/ is proxied
    for path in HIDDEN["docs"] + HIDDEN["metrics"]:
        answer = request(port, path)
        assert served_by_nginx_404(answer), (path, answer.status, answer.body[:200])
        assert all(h in answer.headers for h in SECURITY_HEADERS)

    # Each switch opens its own routes only.
    docs = frontend(fdock, *up, "-e", "EXPOSE_API_DOCS=1")
    metrics = frontend(fdock, *up, "-e", "EXPOSE_API_METRICS=true")
    for fe_open, opened, closed in ((docs, "docs", "metrics"), (metrics, "metrics", "docs")):
        for path in HIDDEN[opened]:
            answer = request(fe_open.ports[8080], path)
            assert answer.status == 200 and answer.upstream()["name"] == "a", (path, answer.status)
        for path in HIDDEN[closed]:
            assert served_by_nginx_404(request(fe_open.ports[8080], path)), path


def test_the_expose_switches_serve_the_real_api_docs_and_metrics(fdock: Docker) -> None:
    net = fdock.network()
    fdock.run(API_IMAGE, *API_RUN, "--network", net, "--network-alias", "inference-api")
    hidden = frontend(fdock, "--network", net)
    exposed = frontend(fdock, "--network", net, "-e", "EXPOSE_API_DOCS=1", "-e", "EXPOSE_API_METRICS=1")
    wait_for(exposed.url(8080, "/api/ready"), timeout=90)

    def get(fe: Container, path: str) -> Answer:
        return request(fe.ports[8080], path)

    for path in ("/api/docs", "/api/openapi.json", "/api/metrics"):
        assert served_by_nginx_404(get(hidden, path)), path
    assert get(hidden, "/api/ready").status == 200
    page = get(exposed, "/api/docs")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "/predict" in json.loads(get(exposed, "/api/openapi.json").body)["paths"]
    metrics = get(exposed, "/api/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert b"# TYPE inference_" in metrics.body  # the API's own Prometheus exposition


# ---------------------------------------------------------------- the live upstream switch


def reload(fe: Container) -> subprocess.CompletedProcess[str]:
    """What an operator (or Ansible's handler) runs: the entrypoint's reload, as uid 101."""
    return docker("exec", fe.name, "frontend-entrypoint", "reload", check=False, timeout=60)


def test_reload_switches_the_upstream_and_lets_requests_in_flight_finish(fdock: Docker, pki: Pki) -> None:
    net = fdock.network()
    echo(fdock, net, "a")
    echo(fdock, net, "b")
    live = Path(tempfile.mkdtemp(prefix="mlops-frontend-live-"))
    live.chmod(0o755)
    try:
        fe = frontend(
            fdock,
            *("--network", net, "-e", "API_UPSTREAM=http://upstream-a:8000"),
            *("-v", f"{live}:{LIVE_DIR}:ro"),
            *tls_options(pki),
        )
        port, ctx = fe.ports[8443], client_context(pki)

        def upstream() -> str:
            return request(port, "/api/health", ctx=ctx).upstream()["name"]

        wait_for_name = _poller(upstream)
        wait_for_name("a")

        # A file that is not one http://host:port line: refused, the running configuration stays.
        for content in (
            "http://upstream-b:8000/api\n",
            "http://upstream-b:8000\nhttp://upstream-a:8000\n",
            "\n",
            "b:8000\n",
        ):
            (live / "api_upstream").write_text(content)
            run = reload(fe)
            assert run.returncode == 2, (content, run.stdout, run.stderr)
            assert f"{LIVE_DIR}/api_upstream" in run.stderr and "left untouched" in run.stderr, run.stderr
            assert upstream() == "a"

        # A request in flight on A when the switch happens.
        slow: dict[str, Any] = {}

        def hold() -> None:
            try:
                slow["answer"] = request(port, "/api/slow?seconds=4", ctx=ctx)
            except Exception as exc:
                slow["error"] = exc

        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(1)  # the request has reached A

        (live / "api_upstream").write_text("http://upstream-b:8000\n")
        run = reload(fe)
        assert run.returncode == 0, run.stderr
        assert "/api/ -> http://upstream-b:8000" in run.stdout and "api_upstream" in run.stdout, run.stdout
        # Once `reload` returns, every new connection meets the new configuration.
        assert [upstream() for _ in range(5)] == ["b"] * 5
        holder.join(timeout=15)
        assert "error" not in slow, slow
        assert slow["answer"].status == 200 and slow["answer"].upstream()["name"] == "a"
        assert "reloaded" in fe.logs()  # the switch is in the container's log too

        # A renewed certificate goes live with a reload as well; one nginx refuses does not.
        serial = renew_server_certificate(pki)
        assert reload(fe).returncode == 0
        assert _served_serial(port) == serial
        original = pki.cert.read_bytes()
        pki.cert.write_text("not a certificate\n")
        try:
            run = reload(fe)
            assert run.returncode == 1 and "nginx -t" in run.stderr and "left untouched" in run.stderr, run.stderr
            assert _served_serial(port) == serial and upstream() == "b"
        finally:
            pki.cert.write_bytes(original)

        # A restarted container starts on the live file.
        docker("restart", "--time", "20", fe.name, timeout=90)
        fe.ports[8443] = port = int(docker("port", fe.name, "8443").stdout.splitlines()[0].rsplit(":", 1)[1])
        fe.ports[8080] = int(docker("port", fe.name, "8080").stdout.splitlines()[0].rsplit(":", 1)[1])
        wait_for(fe.url(8080, "/health"), timeout=30)
        assert upstream() == "b"
    finally:
        shutil.rmtree(live, ignore_errors=True)


def _poller(read: Any, timeout: float = 10) -> Any:
    def wait(expected: str) -> None:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                last = read()
                if last == expected:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"expected {expected!r} within {timeout}s, last {last!r}")

    return wait


def _served_serial(port: int) -> str:
    """The serial number of the certificate the HTTPS port presents now, in hex."""
    from cryptography import x509

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return f"{x509.load_der_x509_certificate(der).serial_number:X}"


# ---------------------------------------------------------------- testssl.sh


def find_testssl() -> str | None:
    return shutil.which("testssl") or shutil.which("testssl.sh")  # Debian installs it as `testssl`


def test_testssl_finds_nothing_rated_high_or_critical(fdock: Docker, pki: Pki) -> None:
    binary = find_testssl()
    if binary is None:
        # Under CI the skip policy (mlops_testkit.pytest_plugin) turns this into a failure.
        pytest.skip("testssl.sh is not installed (apt-get install testssl.sh)")
    fe = frontend(fdock, *tls_options(pki))
    port = fe.ports[8443]
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / "testssl-frontend.json"
    report.unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlops-testssl-"))
    try:
        run = subprocess.run(
            [
                binary,
                *("--quiet", "--color", "0", "--warnings", "off", "--nodns", "none"),
                *("--add-ca", str(pki.ca), "--jsonfile-pretty", str(report)),
                f"https://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            cwd=work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert run.returncode < 240 and report.is_file(), (
        f"testssl.sh failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr}"
    )
    doc = json.loads(report.read_text())
    findings = [f for scan in doc["scanResult"] for value in scan.values() if isinstance(value, list) for f in value]
    assert len(findings) > 50, findings  # a real scan, not a refused connection
    by_id = {f["id"]: f for f in findings}
    counts = Counter(f["severity"] for f in findings)
    version = str(doc.get("version", "?")).split()[0]

    # Every TLS 1.2 suite offered is ECDHE + AEAD, in the server's order.
    pfs = by_id["PFS_ciphers"]["finding"].split()
    tls12 = [c for c in pfs if not c.startswith("TLS_")]
    assert tls12 and all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in tls12), pfs

    # Any finding rated HIGH or CRITICAL fails the test: none is accepted.
    serious = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL")]
    summary = {
        "testssl": version,
        "target": f"mlops/frontend HTTPS (TLS_PORT) via 127.0.0.1:{port}",
        "counts": dict(sorted(counts.items())),
        "high_or_critical": [f"{f['severity']} {f['id']}: {f['finding']}" for f in serious],
    }
    (ARTIFACTS / "testssl-frontend-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"testssl.sh {version}: findings by severity {dict(sorted(counts.items()))}")
    for line in summary["high_or_critical"]:
        print(f"  {line}")
    assert not serious, json.dumps(serious, indent=2)

    # What the configuration promises, as testssl.sh saw it.
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[proto]["finding"] == "not offered", by_id[proto]
    assert by_id["TLS1_2"]["finding"] == "offered" and by_id["TLS1_3"]["finding"].startswith("offered")
    assert by_id["cert_chain_of_trust"]["severity"] == "OK", by_id["cert_chain_of_trust"]
    # Revocation: the certificate names the site CA's CRL (served by the frontend itself).
    assert CDP_URL in by_id["cert_crlDistributionPoints"]["finding"], by_id["cert_crlDistributionPoints"]
    assert "cert_revocation" not in by_id, by_id["cert_revocation"]
    assert by_id["HSTS_time"]["severity"] == "OK" and "63072000" in by_id["HSTS_time"]["finding"], by_id["HSTS_time"]
