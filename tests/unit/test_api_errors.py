"""What an apiserver answer outside 2xx means to certsmith (kube.ApiError.from_answer),
from the Status objects kube-apiserver sends (k8s.io/apimachinery meta/v1 Status)."""

from __future__ import annotations

import json

import pytest

from certsmith.kube import ApiError

TERMINATING = {
    "kind": "Status",
    "status": "Failure",
    "message": 'secrets "web-tls" is forbidden: unable to create new content in namespace '
    "shop because it is being terminated",
    "reason": "Forbidden",
    "details": {
        "name": "web-tls",
        "kind": "secrets",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace shop is being terminated",
                "field": "metadata.namespace",
            }
        ],
    },
    "code": 403,
}
NAMESPACE_GONE = {
    "kind": "Status",
    "status": "Failure",
    "message": 'namespaces "shop" not found',
    "reason": "NotFound",
    "details": {"name": "shop", "kind": "namespaces"},
    "code": 404,
}
SECRET_GONE = {
    "kind": "Status",
    "status": "Failure",
    "message": 'secrets "web-tls" not found',
    "reason": "NotFound",
    "details": {"name": "web-tls", "kind": "secrets"},
    "code": 404,
}
RBAC = {
    "kind": "Status",
    "status": "Failure",
    "message": 'secrets is forbidden: User "x" cannot create resource "secrets"',
    "reason": "Forbidden",
    "details": {"kind": "secrets"},
    "code": 403,
}


@pytest.mark.parametrize(
    ("status", "body", "closed"),
    [
        (403, TERMINATING, True),
        (404, NAMESPACE_GONE, True),
        (404, SECRET_GONE, False),
        (403, RBAC, False),
    ],
)
def test_a_create_refused_for_its_namespace_is_told_apart(
    status: int, body: dict[str, object], closed: bool
) -> None:
    error = ApiError.from_answer(status, "ignored", json.dumps(body).encode())
    assert error.namespace_closed is closed
    assert (error.status, error.reason, error.message) == (status, body["reason"], body["message"])


def test_an_answer_without_a_status_keeps_the_http_reason_and_the_start_of_the_body() -> None:
    error = ApiError.from_answer(502, "Bad Gateway", b"<html>" + b"x" * 300)
    assert (error.status, error.reason) == (502, "Bad Gateway")
    assert error.message.startswith("b'<html>xxx") and len(error.message) < 220
    assert not error.namespace_closed
    assert ApiError.from_answer(500, "Internal Server Error", b"[1, 2]").reason == (
        "Internal Server Error"
    )
