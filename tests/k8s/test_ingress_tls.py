"""Production's Ingress TLS Secret, rendered from the inventory's certificate and key: checked
on the controller first (a key of another certificate, an expired certificate or one for other
names stops the run, naming the variable)."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from k8s_rendering import ANSI, INVENTORIES, Rendering, run_render

NAME = "mlops.clinic.example"


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def certificate(key: ec.EllipticCurvePrivateKey, name: str = NAME, days_left: int = 30) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(now + datetime.timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def render_with(tmp_path: Path, cert: str, key: str) -> tuple[int, str, Rendering]:
    extra = {"mlops_tls_cert": cert, "mlops_tls_key": key, "mlops_tls_names": [NAME]}
    run = run_render(INVENTORIES / "prod", tmp_path, "-e", json.dumps(extra))
    return run.returncode, ANSI.sub("", run.stdout + run.stderr), Rendering(tmp_path)


def test_the_ingress_tls_secret_is_rendered_from_the_inventory(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(key)
    rc, out, rendering = render_with(tmp_path, cert, key_pem(key))
    assert rc == 0, out[-4000:]
    inventory = yaml.safe_load((INVENTORIES / "prod/group_vars/k3s_cluster.yml").read_text())
    name = inventory["k8s_topology_ingress_tls_secret"]
    secrets = {o["metadata"]["name"]: o for o in rendering.objects() if o["kind"] == "Secret"}
    secret = secrets[name]
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.crt"]).decode().strip() == cert.strip()
    (ingress,) = [o for o in rendering.objects() if o["kind"] == "Ingress"]
    assert ingress["spec"]["tls"][0]["secretName"] == name
    # The key is in the Secret's file alone.
    for path in rendering.manifest_files():
        if "secret" not in path.name:
            assert "PRIVATE KEY" not in path.read_text(), path
    assert "PRIVATE KEY" not in out


def test_a_key_of_another_certificate_stops_the_run(tmp_path: Path) -> None:
    cert = certificate(ec.generate_private_key(ec.SECP256R1()))
    rc, out, _ = render_with(tmp_path, cert, key_pem(ec.generate_private_key(ec.SECP256R1())))
    assert rc != 0
    assert "mlops_tls_key" in out and "PRIVATE KEY" not in out


def test_an_expired_certificate_stops_the_run(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    rc, out, _ = render_with(tmp_path, certificate(key, days_left=-1), key_pem(key))
    assert rc != 0
    assert "mlops_tls_cert is not valid now" in out, out[-4000:]


def test_a_certificate_for_other_names_stops_the_run(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    rc, out, _ = render_with(tmp_path, certificate(key, name="other.clinic.example"), key_pem(key))
    assert rc != 0
    assert f"mlops_tls_cert does not cover {NAME}" in out, out[-4000:]
