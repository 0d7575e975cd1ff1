"""TLS to Elasticsearch: verification on by default, a custom CA works, a wrong one does not.

A second node serving HTTPS is started for this module, with a CA and a node
certificate made here, and stopped at the end.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from elastic_transport import TlsError

from nis2triage import esclient, localnode

from support import write_agent_config


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(folder: Path, common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / f"{common}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_node_cert(folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("nis2triage-test-node"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "node.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / "node.key").write_bytes(pem)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[localnode.NodeInfo, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca = make_ca(folder, "test-ca")
    make_ca(folder, "other-ca")
    make_node_cert(folder, ca_key, ca)
    # Not under pytest's temporary folder: pytest keeps that private to root (0700), and a
    # concurrent pytest resets it, so the node's unprivileged user could not reach it.
    home = localnode.repo_root() / ".es-tls-test"
    shutil.rmtree(home, ignore_errors=True)
    env = {
        "NIS2TRIAGE_ES_HOME": str(home),
        "NIS2TRIAGE_ES_HEAP": "512m",
        "NIS2TRIAGE_ES_TLS_CERT": str(folder / "node.crt"),
        "NIS2TRIAGE_ES_TLS_KEY": str(folder / "node.key"),
        "NIS2TRIAGE_ES_TLS_CA": str(folder / "test-ca.pem"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield localnode.start(), folder
    finally:
        localnode.stop()
        shutil.rmtree(home, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def settings(node: localnode.NodeInfo, **extra: object) -> esclient.ESSettings:
    return esclient.ESSettings(
        hosts=(node.url,),
        username=node.user,
        password=node.password,
        **extra,  # type: ignore[arg-type]
    )


def test_node_serves_https_and_the_custom_ca_is_trusted(tls_node: tuple) -> None:
    node, folder = tls_node
    client = esclient.connect(settings(node, ca_file=str(folder / "test-ca.pem")))

    assert node.url.startswith("https://127.0.0.1:")
    assert esclient.cluster_info(client).version.startswith(("8.", "9."))


@pytest.mark.parametrize("ca", [None, "other-ca.pem"], ids=["system-cas", "wrong-ca"])
def test_an_unknown_certificate_is_refused_by_default(tls_node: tuple, ca: str | None) -> None:
    node, folder = tls_node
    client = esclient.connect(settings(node, ca_file=str(folder / ca) if ca else None))

    with pytest.raises(TlsError, match="CERTIFICATE_VERIFY_FAILED"):
        client.cluster.health()


@pytest.mark.usefixtures("agent_env")
def test_the_agent_runs_over_tls_with_its_ca_file(tls_node: tuple, tmp_path: Path) -> None:
    node, folder = tls_node
    es_settings = settings(node)
    config = write_agent_config(tmp_path, es_settings, "logs-tls-empty", "tls-st")
    data = yaml.safe_load(config.read_text())
    data["elasticsearch"]["ca_file"] = str(folder / "test-ca.pem")
    config.write_text(yaml.safe_dump(data))
    env = dict(os.environ, NIS2TRIAGE_TEST_ES_PASSWORD=node.password)

    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    data["elasticsearch"].pop("ca_file")
    config.write_text(yaml.safe_dump(data))
    refused = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert "0 events" in done.stdout
    assert refused.returncode == 1
    assert "certificate" in refused.stderr.lower()
