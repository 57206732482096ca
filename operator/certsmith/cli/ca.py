"""`kubectl certsmith ca status|rotate`: the CertificateAuthorities at a glance, and root rotation.

Rotation itself is the operator's job; `rotate` only records the request as an annotation
(certsmith.dev/rotate-requested-at) and `status` shows the phase the operator reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from certsmith.api import conditions, names
from certsmith.cli import output
from certsmith.cli.renew import request_value

if TYPE_CHECKING:
    from certsmith.cli.api import Api

DEFAULT_AUTHORITY = "cluster-root"
SHORT_FINGERPRINT = 16  # hex digits: enough to tell roots apart at a glance


class AuthorityRow(TypedDict):
    """One CertificateAuthority as `ca status` shows it (`-o json`: `{"items": [rows]}`)."""

    name: str
    ready: str
    """The Ready condition's status: "True", "False", or "Unknown" when there is none."""
    reason: str | None
    message: str | None
    phase: str | None
    """status.phase: Ready, Distributing, Reissuing or Retiring (a root rotation)."""
    root: Mapping[str, Any]
    """status.root as the operator reports it: fingerprint, notAfter, subject."""
    intermediate: Mapping[str, Any]
    """status.intermediate: the same, and renewalTime."""
    rotation: Mapping[str, Any] | None
    """status.rotation as the operator reports it, shown field by field."""
    rotationRequestedAt: str | None
    """The certsmith.dev/rotate-requested-at annotation: the last rotation asked for."""


def authority_row(body: Mapping[str, Any]) -> AuthorityRow:
    """The row of a CertificateAuthority as the apiserver returns it."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    ready = conditions.find_condition(status.get("conditions"), conditions.READY) or {}
    root = status.get("root") or {}
    intermediate = status.get("intermediate") or {}
    return {
        "name": metadata.get("name", ""),
        "ready": str(ready.get("status", "Unknown")),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
        "phase": status.get("phase"),
        "root": root,
        "intermediate": intermediate,
        "rotation": status.get("rotation"),
        "rotationRequestedAt": (metadata.get("annotations") or {}).get(names.ROTATE_ANNOTATION),
    }


def _flatten(value: object, prefix: str = "") -> list[str]:
    """`rotation` is reported by the operator; show whatever fields it has as key=value."""
    if isinstance(value, Mapping):
        return [
            item
            for key, inner in value.items()
            for item in _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        ]
    return [f"{prefix}={value}"]


def render(rows: Iterable[AuthorityRow], *, color: bool = False) -> str:
    """The table `ca status` prints, a MESSAGE column when one is not Ready, then one line of
    rotation fields for each authority that reports any."""
    rows = list(rows)
    if not rows:
        return "No CertificateAuthorities found: is the certsmith operator running?"
    headers = ["NAME", "READY", "ROOT FINGERPRINT", "ROOT EXPIRES", "INTERMEDIATE EXPIRES", "PHASE"]
    with_message = any(row["ready"] != "True" for row in rows)
    if with_message:  # the column only appears when there is something to explain
        headers.append("MESSAGE")
    table_rows = []
    for row in rows:
        cells = [
            row["name"],
            row["ready"],
            (row["root"].get("fingerprint") or output.NONE)[:SHORT_FINGERPRINT],
            row["root"].get("notAfter") or output.NONE,
            row["intermediate"].get("notAfter") or output.NONE,
            row["phase"] or output.NONE,
        ]
        if with_message:
            explained = f"{row['reason'] or 'NotReady'}: {row['message'] or ''}"
            cells.append("" if row["ready"] == "True" else explained)
        table_rows.append(cells)
    lines = [
        output.table(
            headers,
            table_rows,
            style=lambda column, text: output.color_status(text, color and column == 1),
        )
    ]
    lines += [
        f"{row['name']} rotation: {', '.join(_flatten(row['rotation']))}"
        for row in rows
        if row["rotation"]
    ]
    return "\n".join(lines)


def exit_code(rows: Iterable[AuthorityRow]) -> int:
    """0 when there are authorities and all are Ready, else 1."""
    rows = list(rows)
    return 0 if rows and all(row["ready"] == "True" for row in rows) else 1


def run_status(api: Api, *, json_output: bool, color: bool) -> int:
    """`ca status`: every CertificateAuthority by name; the exit code as `exit_code`."""
    rows = sorted((authority_row(b) for b in api.list_authorities()), key=lambda r: r["name"])
    if json_output:
        output.print_json({"items": rows})
    else:
        print(render(rows, color=color))
    return exit_code(rows)


def run_rotate(api: Api, *, name: str, now: datetime) -> int:
    """`ca rotate`: ask the operator to rotate `name`'s root (NotFound if it does not exist)."""
    api.get_authority(name)  # a clear "not found" before anything is written
    value = request_value(now)
    api.annotate_authority(name, {names.ROTATE_ANNOTATION: value})
    print(
        f"CertificateAuthority {name}: root rotation requested at {value}; "
        "follow it with `kubectl certsmith ca status`"
    )
    return 0
