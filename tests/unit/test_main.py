"""`python -m certsmith` with a setting it cannot use: the variable named, exit status 2,
before anything talks to a cluster."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from certsmith import __main__ as entry


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CERTSMITH_WORKERS", "0", "CERTSMITH_WORKERS='0' must be at least 1"),
        ("CERTSMITH_METRICS_PORT", "http", "CERTSMITH_METRICS_PORT='http' is not a port number"),
        ("CERTSMITH_TRUST_DOMAIN", "a/b", "CERTSMITH_TRUST_DOMAIN='a/b' is no SPIFFE trust domain"),
    ],
)
def test_a_config_error_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    variable: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(variable, value)
    # Where the operator would connect if it got that far: nowhere.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [{name: nowhere, cluster: {server: 'https://127.0.0.1:1'}}]\n")
    monkeypatch.setenv("CERTSMITH_OPERATOR_KUBECONFIG", str(kubeconfig))
    with caplog.at_level(logging.ERROR, logger="certsmith"), pytest.raises(SystemExit) as exited:
        entry.main([])
    assert exited.value.code == entry.EXIT_CANNOT_RUN == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"cannot start: {said}"), errors


def test_a_taken_port_exits_2_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("CERTSMITH_HEALTH_PORT", str(port))
        # Only the port under test is checked (the defaults may be taken on a developer's box).
        monkeypatch.setenv("CERTSMITH_WEBHOOKS", "off")
        monkeypatch.setenv("CERTSMITH_METRICS_PORT", "0")
        with (
            caplog.at_level(logging.ERROR, logger="certsmith"),
            pytest.raises(SystemExit) as exited,
        ):
            entry.main([])
    assert exited.value.code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"cannot start: CERTSMITH_HEALTH_PORT={port}: the port is taken (Address already in use);"
        " choose another"
    ], errors
