"""Access to the converged stack: HTTPS with the site CA (and its CRL), API keys, nothing
internal in public, secret files the containers alone may read, and no submitted value in any log."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from conftest import ENABLED, FRONTEND_HTTP, HOST_CA, PKI_DIR, api_key, curl, inspect

API = f"http://127.0.0.1:{ENABLED['inference-api']['port']}"
# Values no real measurement has: found in a log, they can only come from these requests.
MARKER_VALUE = 987.654321
MARKER_TEXT = "PATIENT-X-777"


def test_plain_http_redirects_to_https(host: Any) -> None:
    out = host.check_output(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' {FRONTEND_HTTP}/api/ready")
    status, location = out.split(" ", 1)
    assert status == "301"
    assert location.startswith(f"https://127.0.0.1:{ENABLED['frontend']['tls_port']}/api/ready")


def test_https_is_served_with_a_certificate_of_the_site_ca(host: Any) -> None:
    # curl trusts the site CA alone (--cacert): the chain and the name localhost verify.
    status, _ = curl(host, "/health")
    assert status == 200
    headers = host.check_output(
        f"curl -sS -D - -o /dev/null --cacert {HOST_CA} https://localhost:{ENABLED['frontend']['tls_port']}/"
    )
    assert "strict-transport-security: max-age=" in headers.lower()
    # The controller's copy of the CA is the one on the host.
    assert host.file(HOST_CA).content_string.strip() == (PKI_DIR / "ca.crt").read_text().strip()


def test_the_host_certificate_names_the_site_ca_crl_its_frontend_serves(host: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    # The certificate pki.yml issued names the CRL on this host's own frontend (plain HTTP, the
    # catalogue's port as the scenario overrides it), by the host's first name (its CN here).
    cert = x509.load_pem_x509_certificate(host.file("/etc/mlops/frontend/tls/tls.crt").content_string.encode())
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    (point,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name is not None
    url = point.full_name[0].value
    path = "/crl/site-ca.crl"
    assert url == f"http://{name}:{ENABLED['frontend']['port']}{path}"

    # The CRL the controller signed reaches the host beside ca.crt ...
    f = host.file("/etc/mlops/frontend/tls/ca.crl")
    assert (f.user, f.mode) == ("root", 0o444)
    signed = x509.load_pem_x509_crl((PKI_DIR / "ca.crl").read_bytes())
    assert f.content_string.strip() == (PKI_DIR / "ca.crl").read_text().strip()
    # ... and the frontend serves it, in DER, on plain HTTP (no redirect to HTTPS).
    out = host.check_output(f"curl -sS -o /tmp/site-ca.crl -w '%{{http_code}} %{{content_type}}' {FRONTEND_HTTP}{path}")
    assert out == "200 application/pkix-crl", out
    served = x509.load_der_x509_crl(host.file("/tmp/site-ca.crl").content)
    assert served.public_bytes(serialization.Encoding.DER) == signed.public_bytes(serialization.Encoding.DER)
    ca = x509.load_pem_x509_certificate((PKI_DIR / "ca.crt").read_bytes())
    assert served.issuer == ca.subject and served.is_signature_valid(ca.public_key())
    # The host certificate is not on it.
    assert served.get_revoked_certificate_by_serial_number(cert.serial_number) is None


def test_old_tls_versions_are_refused(host: Any) -> None:
    run = host.run(
        f"curl -sS --cacert {HOST_CA} --tls-max 1.1 https://localhost:{ENABLED['frontend']['tls_port']}/health"
    )
    assert run.rc != 0


def test_prediction_without_a_key_is_refused(host: Any, record: dict[str, float]) -> None:
    body = json.dumps(record)
    status, out = curl(host, "/api/predict", "-H 'content-type: application/json'", f"--data '{body}'")
    assert status == 401, out
    status, out = curl(
        host, "/api/predict", "-H 'content-type: application/json'", f"--data '{body}'", key="not-a-key-" * 3
    )
    assert status == 401, out
    metrics = host.check_output(f"curl -sS {API}/metrics")
    assert "mlops_inference_unauthorized_total" in metrics


@pytest.mark.parametrize("path", ["/api/metrics", "/api/docs", "/api/openapi.json"])
def test_internal_paths_are_not_public(host: Any, path: str) -> None:
    assert curl(host, path)[0] == 404
    # ... while the API still serves them on the internal network (Prometheus scrapes /metrics).
    assert host.run(f"curl -sSf -o /dev/null {API}{path.removeprefix('/api')}").rc == 0


def test_api_keys_reach_the_host_as_hashes_only(host: Any) -> None:
    f = host.file("/etc/mlops/secrets/api-keys")
    gid = ENABLED["inference-api"]["user"].split(":")[1]
    assert (f.user, f.gid, f.mode) == ("root", int(gid), 0o440)
    key = api_key()
    assert f.content_string == f"site:{hashlib.sha256(key.encode()).hexdigest()}\n"
    assert key not in host.check_output("cat /etc/mlops/compose/compose.yml")
    env = inspect(host, ENABLED["inference-api"]["container_name"])["Config"]["Env"]
    assert "AUTH_MODE=api_key" in env and not any(key in e for e in env)


def test_tls_key_is_readable_by_the_frontend_alone(host: Any) -> None:
    f = host.file("/etc/mlops/frontend/tls/tls.key")
    gid = int(ENABLED["frontend"]["user"].split(":")[1])
    assert (f.user, f.gid, f.mode) == ("root", gid, 0o440)


def test_no_submitted_value_reaches_any_log(host: Any, record: dict[str, float]) -> None:
    good = dict(record, mean_radius=MARKER_VALUE)
    bad = dict(record, mean_texture=MARKER_TEXT)
    for body in (good, bad, {"records": [good, good]}):
        curl(host, "/api/predict", "-H 'content-type: application/json'", f"--data '{json.dumps(body)}'", key=api_key())
    for svc in ENABLED.values():
        logs = host.run(f"docker logs {svc['container_name']}")
        text = logs.stdout + logs.stderr
        assert str(MARKER_VALUE) not in text, svc["container_name"]
        assert MARKER_TEXT not in text, svc["container_name"]
    # The API did log those predictions, without the values.
    api_logs = host.run(f"docker logs {ENABLED['inference-api']['container_name']}")
    assert '"prediction"' in api_logs.stdout + api_logs.stderr
