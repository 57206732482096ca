"""Operator settings from the environment: bad values stop the start with the variable named."""

import re
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


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # Each pooled connection slot is made at start: a typo must not eat the node's memory.
        ("CERTSMITH_WORKERS", "99999999999999999999", "must be at most 256"),
        ("CERTSMITH_WORKERS", "257", "must be at most 256"),
        ("CERTSMITH_WEBHOOK_LISTEN_PORT", "70000", "is not a port number from 1 to 65535"),
        ("CERTSMITH_WEBHOOK_LISTEN_PORT", "0", "is not a port number from 1 to 65535"),
        ("CERTSMITH_METRICS_PORT", "65536", "is not a port number from 0 to 65535"),
        ("CERTSMITH_WEBHOOKS", "maybe", "is neither on nor off"),
        ("CERTSMITH_NAMESPACE", "Bad_NS", "is not a valid name"),
        ("CERTSMITH_NAMESPACE", "a/b", "is not a valid name"),
        ("CERTSMITH_NAMESPACE", "a" * 64, "is not a valid name"),
        ("CERTSMITH_WEBHOOK_SERVICE", "web hook", "is not a valid name"),
        ("CERTSMITH_WORKERS", "+4", "is not a whole number"),
        ("CERTSMITH_WORKERS", "1_0", "is not a whole number"),
        ("CERTSMITH_WORKERS", "\uff11\uff12", "is not a whole number"),  # full-width 12
        ("CERTSMITH_METRICS_PORT", "\u0663", "is not a port number"),  # Arabic-Indic 3
        ("CERTSMITH_METRICS_PORT", "+9402", "is not a port number"),
    ],
)
def test_a_setting_certsmith_cannot_use_is_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    pattern = f"^{re.escape(f'{variable}={value!r} ')}.*{re.escape(message)}"
    with pytest.raises(config.ConfigError, match=pattern):
        config.from_env({variable: value})


def test_boundary_values_that_work_are_taken() -> None:
    cfg = config.from_env(
        {
            "CERTSMITH_WORKERS": str(config.MAX_WORKERS),
            "CERTSMITH_WEBHOOK_LISTEN_PORT": "65535",
            "CERTSMITH_METRICS_PORT": "0",
            "CERTSMITH_WEBHOOKS": "No",
            "CERTSMITH_NAMESPACE": "a" * 63,
        }
    )
    assert (cfg.workers, cfg.webhook_port, cfg.metrics_port) == (256, 65535, 0)
    assert cfg.webhooks is False and cfg.namespace == "a" * 63


def test_webhook_cert_dir_must_be_a_directory(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(
        config.ConfigError, match=r"CERTSMITH_WEBHOOK_CERT_DIR=.* is not a directory"
    ):
        config.from_env({"CERTSMITH_WEBHOOK_CERT_DIR": str(afile)})
    with pytest.raises(
        config.ConfigError, match=r"CERTSMITH_WEBHOOK_CERT_DIR=.* cannot be created"
    ):
        config.from_env({"CERTSMITH_WEBHOOK_CERT_DIR": str(afile / "certs")})
    # Not yet there but creatable (an emptyDir's subfolder): fine.
    creatable = tmp_path / "new" / "certs"
    assert config.from_env({"CERTSMITH_WEBHOOK_CERT_DIR": str(creatable)}).webhook_cert_dir == (
        str(creatable)
    )
    # With the webhooks off, it is never written.
    cfg = config.from_env({"CERTSMITH_WEBHOOKS": "off", "CERTSMITH_WEBHOOK_CERT_DIR": str(afile)})
    assert cfg.webhooks is False


def test_whole_numbers_may_have_blanks_around_them() -> None:
    cfg = config.from_env({"CERTSMITH_WORKERS": " 4 ", "CERTSMITH_METRICS_PORT": "9400 "})
    assert (cfg.workers, cfg.metrics_port) == (4, 9400)
    assert config.from_env({"CERTSMITH_WORKERS": "  "}).workers == config.Config.workers


def test_a_long_refused_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(config.ConfigError) as refused:
        config.from_env({"CERTSMITH_WORKERS": "9" * 5000})
    assert len(str(refused.value)) < 120, str(refused.value)
    assert str(refused.value).endswith("must be at most 256")


def test_client_ca_with_a_trailing_slash_is_no_file(tmp_path: Path, root: ca.CAKeyPair) -> None:
    pem = tmp_path / "ca.crt"
    pem.write_bytes(root.certificate.public_bytes(Encoding.PEM))
    with pytest.raises(config.ConfigError, match=r"CERTSMITH_WEBHOOK_CLIENT_CA=.* not a file"):
        config.from_env({"CERTSMITH_WEBHOOK_CLIENT_CA": f"{pem}/"})


def test_webhook_cert_dir_that_is_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(config.ConfigError, match=r"CERTSMITH_WEBHOOK_CERT_DIR=.* is not a dir"):
        config.from_env({"CERTSMITH_WEBHOOK_CERT_DIR": str(dangling)})
