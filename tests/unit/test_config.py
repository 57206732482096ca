"""Operator settings from the environment: bad values stop the start with the variable named."""

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certsmith import config
from certsmith.pki import ca


def test_webhook_client_ca_unset_means_unauthenticated_callers() -> None:
    assert config.from_env({}).webhook_client_ca is None


def test_webhook_client_ca_points_at_a_pem_certificate(tmp_path: Path, root: ca.CAKeyPair) -> None:
    pem = tmp_path / "ca.crt"
    pem.write_bytes(root.certificate.public_bytes(Encoding.PEM))
    cfg = config.from_env({"CERTSMITH_WEBHOOK_CLIENT_CA": str(pem)})
    assert cfg.webhook_client_ca == str(pem)


def test_webhook_client_ca_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"CERTSMITH_WEBHOOK_CLIENT_CA=.*cannot be read"):
        config.from_env({"CERTSMITH_WEBHOOK_CLIENT_CA": str(tmp_path / "absent.crt")})


def test_webhook_client_ca_without_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(
        config.ConfigError, match=r"CERTSMITH_WEBHOOK_CLIENT_CA=.*no PEM certificate"
    ):
        config.from_env({"CERTSMITH_WEBHOOK_CLIENT_CA": str(junk)})


def test_ports_and_counts_name_the_variable_they_reject() -> None:
    with pytest.raises(config.ConfigError, match="CERTSMITH_METRICS_PORT='http'"):
        config.from_env({"CERTSMITH_METRICS_PORT": "http"})
    with pytest.raises(config.ConfigError, match="CERTSMITH_WORKERS='0' must be at least 1"):
        config.from_env({"CERTSMITH_WORKERS": "0"})


@pytest.mark.parametrize("value", ["Cluster.Local", "td:8443", "td/x", "a" * 256, "ü.example"])
def test_trust_domain_must_be_a_spiffe_trust_domain(value: str) -> None:
    with pytest.raises(
        config.ConfigError, match=r"CERTSMITH_TRUST_DOMAIN=.* is no SPIFFE trust domain"
    ):
        config.from_env({"CERTSMITH_TRUST_DOMAIN": value})
    assert config.from_env({"CERTSMITH_TRUST_DOMAIN": "prod_1.example-x"}).trust_domain == (
        "prod_1.example-x"
    )
