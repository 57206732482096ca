"""`kubectl certsmith` argument parsing: kubectl's flag conventions hold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certsmith.cli import api, main


def parse(*argv: str):
    return main.build_parser().parse_args(argv)


def test_connection_flags_work_before_and_after_the_command():
    before = parse("--kubeconfig", "k", "--context", "c", "-n", "shop", "status")
    after = parse("status", "--kubeconfig", "k", "--context", "c", "-n", "shop")
    for args in (before, after):
        assert (args.kubeconfig, args.context, args.namespace) == ("k", "c", "shop")
    nested = parse("ca", "rotate", "--kubeconfig", "k")
    assert (nested.kubeconfig, nested.authority) == ("k", "cluster-root")


def test_renew_timeout_takes_go_durations_or_seconds():
    assert parse("renew", "web", "--timeout", "2m").timeout == timedelta(minutes=2)
    assert parse("renew", "web", "--timeout", "90").timeout == timedelta(seconds=90)
    assert parse("renew", "--all").timeout == timedelta(seconds=60)
    with pytest.raises(SystemExit):
        parse("renew", "web", "--timeout", "soon")


def test_approve_and_deny_take_a_request_a_reason_and_a_message(capsys):
    approve = parse("approve", "gw", "-n", "partners")
    assert (approve.command, approve.request, approve.namespace) == ("approve", "gw", "partners")
    assert (approve.reason, approve.message) == ("KubectlCertsmith", None)
    deny = parse("deny", "gw", "--reason", "DeviceLost", "--message", "stolen")
    assert (deny.command, deny.reason, deny.message) == ("deny", "DeviceLost", "stolen")
    with pytest.raises(SystemExit) as exit_info:
        main.main(["deny", "gw", "--reason", "lost device"])
    assert exit_info.value.code == 2
    assert "--reason 'lost device': one CamelCase word" in capsys.readouterr().err


def test_a_usage_error_exits_two_without_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main.main(["inspect"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: certificate" in capsys.readouterr().err


def test_a_missing_kubeconfig_is_one_line_and_exit_one(capsys, tmp_path):
    assert main.main(["--kubeconfig", str(tmp_path / "none"), "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no kubeconfig found at ")
    assert "Traceback" not in err


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: team}},\n"
        "           {name: d, context: {cluster: c, user: u}}]\n"
    )
    return path


def test_the_default_namespace_comes_from_the_context_as_in_kubectl(kubeconfig, monkeypatch):
    assert api.connect(kubeconfig=str(kubeconfig), context=None)[1] == "team"
    assert api.connect(kubeconfig=str(kubeconfig), context="d")[1] == "default"
    monkeypatch.setenv("KUBECONFIG", f"/nonexistent:{kubeconfig}")
    assert api.connect(kubeconfig=None, context=None)[1] == "team"


def test_namespace_and_all_namespaces_conflict(capsys, kubeconfig):
    assert main.main(["--kubeconfig", str(kubeconfig), "status", "-n", "a", "-A"]) == 1
    assert "cannot be used together" in capsys.readouterr().err
