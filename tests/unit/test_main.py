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


def _exits_2_saying(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    argv: list[str],
    env: dict[str, str],
) -> str:
    """The one error `python -m certsmith argv` logs before exiting 2, with only the
    servers under test listening (the defaults may be taken on a developer's box)."""
    caplog.clear()
    monkeypatch.setenv("CERTSMITH_WEBHOOKS", "off")
    monkeypatch.setenv("CERTSMITH_METRICS_PORT", "0")
    monkeypatch.setenv("CERTSMITH_HEALTH_PORT", "0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.ERROR, logger="certsmith"), pytest.raises(SystemExit) as exited:
        entry.main(argv)
    assert exited.value.code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "not yaml", "no clusters"])
def test_a_kubeconfig_that_cannot_be_used_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    kind: str,
) -> None:
    path = tmp_path / "kubeconfig"
    if kind == "directory":
        path.mkdir()
    elif kind != "missing":
        path.write_text({"empty": "", "not yaml": "clusters: [\n", "no clusters": "a: 1\n"}[kind])
    monkeypatch.delenv("CERTSMITH_OPERATOR_KUBECONFIG", raising=False)
    said = _exits_2_saying(monkeypatch, caplog, [], {"KUBECONFIG": str(path)})
    assert said.startswith(f"cannot start: kubeconfig {str(path)!r} "), said
    assert "(CERTSMITH_OPERATOR_KUBECONFIG, else KUBECONFIG) cannot be used" in said


def test_two_servers_on_one_port_exit_2_naming_both(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    said = _exits_2_saying(
        monkeypatch,
        caplog,
        ["--liveness=http://0.0.0.0:18080/healthz"],
        {"CERTSMITH_HEALTH_PORT": "18080"},
    )
    assert (
        said
        == "cannot start: --liveness=18080 is also CERTSMITH_HEALTH_PORT: each needs its own port"
    )
    said = _exits_2_saying(
        monkeypatch, caplog, [], {"CERTSMITH_WEBHOOKS": "on", "CERTSMITH_METRICS_PORT": "9443"}
    )
    assert said.endswith(
        "CERTSMITH_METRICS_PORT=9443 is also CERTSMITH_WEBHOOK_LISTEN_PORT: each needs its own port"
    )


def test_an_admission_refusal_is_no_error_in_the_log() -> None:
    """kopf logs each refused admission request as an ERROR ("Webhook … failed
    permanently"): one per refused request buried real errors (1,942 in 30 minutes of a
    tester's probe). It is INFO, shown with --verbose only; other handler failures stay
    ERRORs."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    objects = logging.getLogger("test.kopf.objects")
    objects.propagate = False
    objects.addHandler(Keep())
    objects.addFilter(entry.AdmissionRefusals(objects))
    refusal = (
        "Webhook 'validate-certificate' failed permanently: spec.dnsNames[0]: 'x' is not allowed"
    )
    crash = "Webhook 'validate-certificate' failed with an exception. Will retry."

    objects.setLevel(logging.INFO)  # --verbose
    objects.error(refusal)
    objects.error(crash)
    assert [(r.levelname, r.getMessage()) for r in seen] == [("INFO", refusal), ("ERROR", crash)]

    seen.clear()
    objects.setLevel(logging.WARNING)  # the default
    objects.error(refusal)
    objects.error(crash)
    assert [(r.levelname, r.getMessage()) for r in seen] == [("ERROR", crash)]
