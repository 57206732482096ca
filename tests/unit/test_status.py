"""The status a Certificate shows (Ready, not Ready, failed) and when it is looked at again.

Each case names the status before, what was judged, and the exact status fields written
(`kubectl get certificates` shows Ready's status and reason, notAfter and serialNumber).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import pytest

from certsmith.certificates import policies, seal, status
from certsmith.pki import ca, inspect
from tests.unit.certificate_builders import (
    NOW,
    contents_of,
    judged,
    observed,
    secret_body,
    spec_of,
)

T = "2026-06-01T12:00:00Z"  # NOW as status shows it
EARLIER = "2026-06-01T09:00:00Z"


def condition(kind: str, state: str, reason: str, message: str, since: str = T) -> dict[str, Any]:
    return {
        "type": kind,
        "status": state,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": 3,
    }


KEY = bytes(range(32))


def sealed(current: dict[str, Any], uid: str = "uid-of-web") -> dict[str, Any]:
    """`current` with certsmith's seal, as it writes it."""
    fields = {k: v for k, v in current.items() if k != "secretSeal"}
    return {**fields, "secretSeal": seal.seal(KEY, uid, fields)}


def ready_conditions(since: str = T, issuing_since: str | None = None) -> list[dict[str, Any]]:
    return [
        condition(
            "Issuing", "False", "UpToDate", "no issuance in progress", issuing_since or since
        ),
        condition("Ready", "True", "Issued", "the certificate is valid and up to date", since),
    ]


# --- not Ready -------------------------------------------------------------------------

DENIED = "spec.dnsNames[0]: 'x.com' is not allowed in this namespace (own names only)"


@pytest.mark.parametrize(
    ("before", "forget", "written"),
    [
        pytest.param(
            {},
            False,
            {
                "conditions": [
                    condition("Issuing", "False", "PolicyDenied", DENIED),
                    condition("Ready", "False", "PolicyDenied", DENIED),
                ]
            },
            id="first judgement",
        ),
        pytest.param(
            {
                "conditions": [
                    condition("Issuing", "False", "PolicyDenied", DENIED, EARLIER),
                    condition("Ready", "False", "PolicyDenied", DENIED, EARLIER),
                ]
            },
            False,
            None,
            id="already says so: nothing written",
        ),
        pytest.param(
            {
                "conditions": [
                    condition("Issuing", "False", "InvalidSpec", "old", EARLIER),
                    condition("Ready", "False", "InvalidSpec", "old", EARLIER),
                ]
            },
            False,
            {
                "conditions": [
                    condition("Issuing", "False", "PolicyDenied", DENIED, EARLIER),
                    condition("Ready", "False", "PolicyDenied", DENIED, EARLIER),
                ]
            },
            id="other reason: written, still False since then",
        ),
        pytest.param(
            {"conditions": ready_conditions(EARLIER), "notAfter": "2026-06-02T00:00:00Z"},
            False,
            {
                "conditions": [
                    condition("Issuing", "False", "PolicyDenied", DENIED, EARLIER),
                    condition("Ready", "False", "PolicyDenied", DENIED),
                ]
            },
            id="was Ready: Ready turns False now, notAfter stays",
        ),
        pytest.param(
            {"conditions": ready_conditions(EARLIER), "notAfter": "2026-06-02T00:00:00Z"},
            True,
            {
                "conditions": [
                    condition("Issuing", "False", "PolicyDenied", DENIED, EARLIER),
                    condition("Ready", "False", "PolicyDenied", DENIED),
                ],
                "notBefore": None,
                "notAfter": None,
                "renewalTime": None,
                "serialNumber": None,
            },
            id="forget the certificate: its fields are removed",
        ),
        pytest.param(
            {
                "conditions": [
                    condition("Issuing", "False", "PolicyDenied", DENIED, EARLIER),
                    condition("Ready", "False", "PolicyDenied", DENIED, EARLIER),
                ]
            },
            True,
            None,
            id="forget, but nothing to remove: nothing written",
        ),
    ],
)
def test_not_ready(before: dict[str, Any], forget: bool, written: dict[str, Any] | None) -> None:
    retry = NOW + timedelta(seconds=9)
    outcome = status.not_ready(
        observed(before),
        "PolicyDenied",
        DENIED,
        NOW,
        retry=retry,
        seal_key=None,
        forget_certificate=forget,
    )
    assert outcome == status.Outcome(status=written, next_check=retry)


def test_issuer_not_ready_is_looked_at_again_after_five_seconds() -> None:
    message = "CertificateAuthority cluster-root does not exist"
    outcome = status.issuer_not_ready(observed(), message, NOW, None)
    assert outcome.next_check == NOW + timedelta(seconds=5)
    assert outcome.status == {
        "conditions": [
            condition("Issuing", "False", "IssuerNotReady", message),
            condition("Ready", "False", "IssuerNotReady", message),
        ]
    }


@pytest.mark.parametrize(
    ("age", "delay"),
    [
        (timedelta(0), timedelta(seconds=2)),
        (timedelta(seconds=19), timedelta(seconds=2)),
        (timedelta(seconds=100), timedelta(seconds=10)),
        (timedelta(seconds=300), timedelta(seconds=30)),
        (timedelta(days=3), timedelta(seconds=30)),
    ],
)
def test_conflict_recheck_delay(age: timedelta, delay: timedelta) -> None:
    assert status.conflict_recheck_delay(age) == delay


CONFLICT = "Secret web-tls was created by hand (not labelled by certsmith); it is left untouched"


@pytest.mark.parametrize(
    ("ready", "age"),
    [
        pytest.param(None, timedelta(0), id="no Ready condition"),
        pytest.param(condition("Ready", "True", "Issued", "ok", EARLIER), timedelta(0), id="Ready"),
        pytest.param(
            condition("Ready", "False", "InvalidSpec", "bad", EARLIER), timedelta(0), id="other"
        ),
        pytest.param(
            condition("Ready", "False", "SecretConflict", CONFLICT, EARLIER),
            timedelta(hours=3),
            id="in conflict since 09:00",
        ),
        pytest.param(
            condition("Ready", "False", "SecretConflict", CONFLICT, "2026-06-01T13:00:00Z"),
            timedelta(0),
            id="transition in the future (clock skew)",
        ),
        pytest.param(
            {"type": "Ready", "status": "False", "reason": "SecretConflict"},
            timedelta(0),
            id="no transition time",
        ),
    ],
)
def test_conflict_age(ready: dict[str, Any] | None, age: timedelta) -> None:
    before = {"conditions": [] if ready is None else [ready]}
    assert status.conflict_age(before, NOW) == age


def test_secret_conflict_forgets_the_certificate_and_rechecks_by_its_age() -> None:
    before = {
        "conditions": [
            condition("Issuing", "False", "SecretConflict", CONFLICT, "2026-06-01T11:59:00Z"),
            condition("Ready", "False", "SecretConflict", CONFLICT, "2026-06-01T11:59:00Z"),
        ],
        "notAfter": "2026-06-02T00:00:00Z",
        "serialNumber": "0a",
    }
    decision = policies.Decision(policies.Action.CONFLICT, "SecretConflict", CONFLICT)
    outcome = status.secret_conflict(observed(before), decision, NOW, None)
    assert outcome.next_check == NOW + timedelta(seconds=6)  # a tenth of 60 s
    assert outcome.status == {
        "conditions": before["conditions"],
        "notBefore": None,
        "notAfter": None,
        "renewalTime": None,
        "serialNumber": None,
    }


def test_not_ready_drops_what_a_restart_would_resume_on_and_seals_what_it_leaves() -> None:
    outcome = status.not_ready(
        observed(RESUMABLE), "PolicyDenied", DENIED, NOW, retry=None, seal_key=KEY
    )
    assert outcome.status is not None
    assert outcome.status["secretResourceVersion"] is None
    after = {**RESUMABLE, **outcome.status}
    assert outcome.status["secretSeal"] == sealed(after)["secretSeal"]
    assert not status.edited(observed(after), KEY, created=False)


def test_not_ready_without_a_key_removes_the_seal() -> None:
    outcome = status.not_ready(
        observed(RESUMABLE), "PolicyDenied", DENIED, NOW, retry=None, seal_key=None
    )
    assert outcome.status is not None
    assert (outcome.status["secretResourceVersion"], outcome.status["secretSeal"]) == (None, None)


def test_a_not_ready_status_already_sealed_is_not_written_again() -> None:
    first = status.issuer_not_ready(observed(), "no authority", NOW, KEY).status
    assert first is not None
    again = status.issuer_not_ready(observed(first), "no authority", NOW, KEY)
    assert again.status is None


# --- Ready -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "secret_revision", "revision", "conditions"),
    [
        pytest.param({}, 1, 1, ready_conditions(), id="first issuance"),
        pytest.param(
            {
                "conditions": [
                    condition("Issuing", "False", "IssuanceFailed", "boom", EARLIER),
                    condition("Ready", "False", "IssuanceFailed", "boom", EARLIER),
                ],
                "failedIssuanceAttempts": 4,
                "lastFailureTime": EARLIER,
                "revision": 2,
            },
            1,
            2,
            # Issuing was False already: its transition time stays; Ready turns True now.
            ready_conditions(T, issuing_since=EARLIER),
            id="after failures: attempts reset, revision kept from status",
        ),
        pytest.param(
            {"conditions": ready_conditions(EARLIER), "revision": 1},
            5,
            5,
            ready_conditions(EARLIER),
            id="Secret written at a later revision than status (a crash in between)",
        ),
    ],
)
def test_ready(
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    before: dict[str, Any],
    secret_revision: int,
    revision: int,
    conditions: list[dict[str, Any]],
) -> None:
    spec = spec_of(duration="1h")
    body = secret_body(spec, root, intermediate, revision=secret_revision)
    held = policies.readable(judged(spec, contents_of(body), root))
    assert isinstance(held, policies.Held)
    ready = status.ready(observed(sealed(before)), spec, held, NOW, KEY)
    # Issued at 11:50 for an hour: renewal at 2/3 (12:30) less the stable jitter of
    # shop/web (21.26 s), rounded up to the second.
    renewal = NOW + timedelta(minutes=29, seconds=39)
    assert ready.renewal_time == renewal
    written = {
        "conditions": conditions,
        "notBefore": "2026-06-01T11:49:00Z",
        "notAfter": "2026-06-01T12:50:00Z",
        "renewalTime": "2026-06-01T12:29:39Z",
        "serialNumber": inspect.serial_hex(held.leaf),
        "revision": revision,
        "failedIssuanceAttempts": 0,
        "secretResourceVersion": "7",
    }
    # The seal covers the status as it is after the write: what it had (lastFailureTime
    # stays) and what is written.
    assert ready.outcome == status.Outcome(
        status={**written, "secretSeal": sealed({**before, **written})["secretSeal"]},
        next_check=renewal,
    )


def test_ready_without_a_seal_key_records_nothing_to_resume_on(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    spec = spec_of(duration="1h")
    held = policies.readable(judged(spec, contents_of(secret_body(spec, root, intermediate)), root))
    assert isinstance(held, policies.Held)
    written = status.ready(observed(), spec, held, NOW, None).outcome.status
    assert written is not None
    assert written["secretResourceVersion"] is None and "secretSeal" not in written


def test_ready_again_writes_nothing(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> None:
    spec = spec_of(duration="1h")
    held = policies.readable(judged(spec, contents_of(secret_body(spec, root, intermediate)), root))
    assert isinstance(held, policies.Held)
    first = status.ready(observed(), spec, held, NOW, KEY).outcome
    assert first.status is not None
    later = status.ready(observed(first.status), spec, held, NOW + timedelta(minutes=5), KEY)
    assert later.outcome == status.Outcome(status=None, next_check=first.next_check)


# --- resumed: judged again without reading the Secret ----------------------------------

RESUMABLE = sealed(
    {
        "conditions": ready_conditions(EARLIER),
        "notBefore": "2026-06-01T09:59:00Z",
        "notAfter": "2026-06-01T18:00:00Z",
        "renewalTime": "2026-06-01T16:00:00Z",
        "serialNumber": "0a1b2c",
        "revision": 2,
        "secretResourceVersion": "7",
        "failedIssuanceAttempts": 0,
    }
)
RENEWAL = datetime.fromisoformat("2026-06-01T16:00:00+00:00")


def test_resumed_keeps_a_ready_certificate_until_its_renewal() -> None:
    resumed = status.resumed(observed(RESUMABLE, generation=3), "7", NOW, KEY)
    assert resumed == status.Resumed(
        outcome=status.Outcome(status=None, next_check=RENEWAL),
        not_after=datetime.fromisoformat("2026-06-01T18:00:00+00:00"),
        renewal_time=RENEWAL,
    )


@pytest.mark.parametrize(
    ("revoked", "kept"),
    [
        pytest.param(frozenset({0x0A1B2C}), False, id="its serial revoked: judged again"),
        pytest.param(frozenset({0x0A1B2D}), True, id="another serial revoked: kept"),
    ],
)
def test_resumed_judges_a_revoked_serial_again(revoked: frozenset[int], kept: bool) -> None:
    resumed = status.resumed(observed(RESUMABLE, generation=3), "7", NOW, KEY, revoked=revoked)
    assert (resumed is not None) is kept


def _failed_attempts(current: dict[str, Any]) -> dict[str, Any]:
    return {**current, "failedIssuanceAttempts": 2}


def _issuing(current: dict[str, Any]) -> dict[str, Any]:
    issuing = condition("Issuing", "True", "RenewalDue", "renewing", EARLIER)
    return {**current, "conditions": [issuing, current["conditions"][1]]}


def _not_ready(current: dict[str, Any]) -> dict[str, Any]:
    ready = condition("Ready", "False", "Expired", "expired", EARLIER)
    return {**current, "conditions": [current["conditions"][0], ready]}


@pytest.mark.parametrize(
    ("current", "secret_version", "generation", "annotations", "now"),
    [
        pytest.param(RESUMABLE, "8", 3, None, NOW, id="the Secret changed since"),
        pytest.param(RESUMABLE, None, 3, None, NOW, id="no Secret listed"),
        pytest.param(RESUMABLE, "", 3, None, NOW, id="a Secret listed without a version"),
        pytest.param(
            {k: v for k, v in RESUMABLE.items() if k != "secretResourceVersion"},
            "7",
            3,
            None,
            NOW,
            id="a status written before secretResourceVersion",
        ),
        pytest.param(RESUMABLE, "7", 4, None, NOW, id="the spec changed (generation 4)"),
        pytest.param(
            RESUMABLE,
            "7",
            3,
            {"certsmith.dev/renew-requested-at": "2026-06-01T11:00:00Z"},
            NOW,
            id="a renewal requested",
        ),
        pytest.param(RESUMABLE, "7", 3, None, RENEWAL, id="renewalTime reached"),
        pytest.param(
            {**RESUMABLE, "renewalTime": "soon"}, "7", 3, None, NOW, id="renewalTime unreadable"
        ),
        pytest.param(
            {k: v for k, v in RESUMABLE.items() if k != "notAfter"},
            "7",
            3,
            None,
            NOW,
            id="no notAfter",
        ),
        pytest.param(_failed_attempts(RESUMABLE), "7", 3, None, NOW, id="an issuance failed"),
        pytest.param(_issuing(RESUMABLE), "7", 3, None, NOW, id="an issuance under way"),
        pytest.param(_not_ready(RESUMABLE), "7", 3, None, NOW, id="not Ready"),
        # Status is user-writable: what the seal covers cannot be edited unseen.
        pytest.param(
            {**RESUMABLE, "renewalTime": "2026-09-01T16:00:00Z"},
            "7",
            3,
            None,
            NOW,
            id="renewalTime edited later",
        ),
        pytest.param(
            {**RESUMABLE, "notAfter": "2027-06-01T18:00:00Z"},
            "7",
            3,
            None,
            NOW,
            id="notAfter edited",
        ),
        pytest.param(
            {**RESUMABLE, "serialNumber": "0a1b2d"}, "7", 3, None, NOW, id="serialNumber edited"
        ),
        pytest.param(
            {**RESUMABLE, "notBefore": "2026-06-01T08:00:00Z"},
            "7",
            3,
            None,
            NOW,
            id="notBefore edited",
        ),
        pytest.param({**RESUMABLE, "revision": 9}, "7", 3, None, NOW, id="revision edited"),
        pytest.param(
            {**RESUMABLE, "lastFailureTime": EARLIER}, "7", 3, None, NOW, id="a field added"
        ),
        pytest.param(
            {
                **RESUMABLE,
                "conditions": [
                    RESUMABLE["conditions"][0],
                    condition("Ready", "True", "Issued", "all fine, trust me", EARLIER),
                ],
            },
            "7",
            3,
            None,
            NOW,
            id="Ready's message edited",
        ),
        pytest.param(
            sealed(RESUMABLE, uid="uid-of-another"),
            "7",
            3,
            None,
            NOW,
            id="sealed for another Certificate",
        ),
        pytest.param(
            {**RESUMABLE, "secretResourceVersion": "8"},
            "8",
            3,
            None,
            NOW,
            id="secretResourceVersion edited to the Secret's version after a change",
        ),
        pytest.param({**RESUMABLE, "secretSeal": None}, "7", 3, None, NOW, id="no seal"),
        pytest.param({**RESUMABLE, "secretSeal": 7}, "7", 3, None, NOW, id="a seal not a string"),
        pytest.param({}, "7", 3, None, NOW, id="never issued"),
    ],
)
def test_resumed_judges_on_the_secret_when_anything_may_have_changed(
    current: dict[str, Any],
    secret_version: str | None,
    generation: int,
    annotations: dict[str, str] | None,
    now: datetime,
) -> None:
    observed_now = observed(current, generation=generation, annotations=annotations)
    assert status.resumed(observed_now, secret_version, now, KEY) is None


@pytest.mark.parametrize(
    ("uid", "key"),
    [
        pytest.param("uid-of-another", KEY, id="a status copied from another Certificate"),
        pytest.param("", KEY, id="no uid"),
        pytest.param("uid-of-web", bytes(32), id="another key (replaced)"),
        pytest.param("uid-of-web", None, id="no key loaded"),
    ],
)
def test_resumed_trusts_no_seal_made_for_something_else(uid: str, key: bytes | None) -> None:
    assert status.resumed(observed(RESUMABLE, uid=uid), "7", NOW, key) is None


# --- edited: a status certsmith did not write ------------------------------------------


@pytest.mark.parametrize(
    ("current", "created", "key", "edited"),
    [
        pytest.param(RESUMABLE, False, KEY, False, id="as certsmith wrote it"),
        pytest.param({}, True, KEY, False, id="a new Certificate: nothing written yet"),
        pytest.param({}, False, KEY, True, id="emptied"),
        pytest.param({"kopf": {"progress": {}}}, False, KEY, True, id="emptied but kopf's"),
        pytest.param(
            {**RESUMABLE, "kopf": {"progress": {}}}, False, KEY, False, id="kopf's field added"
        ),
        pytest.param(_not_ready(RESUMABLE), False, KEY, True, id="Ready turned False"),
        pytest.param(
            {**RESUMABLE, "renewalTime": "2099-01-01T00:00:00Z"}, False, KEY, True, id="renewalTime"
        ),
        pytest.param({**RESUMABLE, "serialNumber": "ff"}, False, KEY, True, id="serialNumber"),
        pytest.param(
            {k: v for k, v in RESUMABLE.items() if k != "notAfter"},
            False,
            KEY,
            True,
            id="notAfter removed",
        ),
        pytest.param(
            {k: v for k, v in RESUMABLE.items() if k != "secretSeal"},
            False,
            KEY,
            True,
            id="the seal removed",
        ),
        pytest.param(RESUMABLE, False, bytes(32), True, id="sealed under another key"),
        pytest.param({**RESUMABLE, "serialNumber": "ff"}, False, None, False, id="no key yet"),
    ],
)
def test_edited(current: dict[str, Any], created: bool, key: bytes | None, edited: bool) -> None:
    assert status.edited(observed(current), key, created=created) is edited


@pytest.mark.parametrize(
    ("current", "key", "serial"),
    [
        pytest.param(RESUMABLE, KEY, "0a1b2c", id="sealed"),
        pytest.param({**RESUMABLE, "serialNumber": "ff"}, KEY, None, id="edited"),
        pytest.param(RESUMABLE, bytes(32), None, id="another key"),
        pytest.param(RESUMABLE, None, None, id="no key"),
        pytest.param(
            sealed({k: v for k, v in RESUMABLE.items() if k != "serialNumber"}),
            KEY,
            None,
            id="none recorded",
        ),
    ],
)
def test_sealed_serial(current: dict[str, Any], key: bytes | None, serial: str | None) -> None:
    assert status.sealed_serial(observed(current), key) == serial


def test_every_status_certsmith_writes_is_its_own(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    """Whatever the path, the status after the write is not taken for someone else's:
    a write never wakes the Certificate again (no write loop)."""
    spec = spec_of(duration="1h")
    body = secret_body(spec, root, intermediate)
    held = policies.readable(judged(spec, contents_of(body), root))
    assert isinstance(held, policies.Held)
    decision = policies.Decision(policies.Action.CONFLICT, "SecretConflict", CONFLICT)
    for before in ({}, RESUMABLE, _not_ready(RESUMABLE), {**RESUMABLE, "serialNumber": "ff"}):
        written = [
            status.ready(observed(before), spec, held, NOW, KEY).outcome.status,
            status.not_ready(
                observed(before), "PolicyDenied", DENIED, NOW, retry=None, seal_key=KEY
            ).status,
            status.issuer_not_ready(observed(before), "no authority", NOW, KEY).status,
            status.secret_conflict(observed(before), decision, NOW, KEY).status,
            status.failed(
                observed(before), "IssuanceFailed", FAILURE, NOW, None, seal_key=KEY
            ).outcome.status,
            status.failed(
                observed(before),
                "IssuanceFailed",
                FAILURE,
                NOW,
                judged(spec, contents_of(body), root),
                seal_key=KEY,
            ).outcome.status,
        ]
        for patch in written:
            after = {**before, **(patch or {})}
            after = {k: v for k, v in after.items() if v is not None}
            assert not status.edited(observed(after), KEY, created=False), (before, patch)


# --- failed issuance -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "jitter", "delay"),
    [
        (0, 1.0, timedelta(seconds=2)),
        (1, 1.0, timedelta(seconds=2)),
        (2, 1.0, timedelta(seconds=4)),
        (3, 1.0, timedelta(seconds=8)),
        (8, 1.0, timedelta(seconds=256)),
        (9, 1.0, timedelta(minutes=5)),
        (47, 1.0, timedelta(minutes=5)),  # 2 s · 2⁴⁶ overflowed timedelta before
        (10**6, 1.0, timedelta(minutes=5)),
        (1, 0.9, timedelta(seconds=1.8)),
        (9, 1.1, timedelta(minutes=5.5)),
    ],
)
def test_retry_delay(attempts: int, jitter: float, delay: timedelta) -> None:
    assert status.retry_delay(attempts, jitter) == delay


FAILURE = "the apiserver answered 503"


@pytest.mark.parametrize(
    ("issued_before", "tamper", "ready", "wake"),
    [
        pytest.param(
            timedelta(minutes=10),
            None,
            (
                "True",
                "Issued",
                "the certificate is valid until 2026-06-01T12:50:00Z; re-issuing it failed "
                f"(see the Issuing condition): {FAILURE}",
            ),
            NOW + timedelta(minutes=50, seconds=1),
            id="usable: Ready stays True until one second past notAfter",
        ),
        pytest.param(
            timedelta(hours=2),
            None,
            (
                "False",
                "Expired",
                "the certificate in Secret web-tls expired at 2026-06-01T11:00:00Z; "
                f"issuing a new one failed: {FAILURE}",
            ),
            None,
            id="expired",
        ),
        pytest.param(
            -timedelta(minutes=5),
            None,
            (
                "False",
                "NotYetValid",
                "the certificate in Secret web-tls is not valid before 2026-06-01T12:04:00Z; "
                f"issuing a new one failed: {FAILURE}",
            ),
            NOW + timedelta(minutes=4),
            id="not yet valid: due again at notBefore",
        ),
        pytest.param(
            timedelta(minutes=10),
            "tls.key",
            (
                "False",
                "SecretInvalid",
                f"tls.key does not hold a supported private key; issuing a new one failed: "
                f"{FAILURE}",
            ),
            None,
            id="unreadable key",
        ),
    ],
)
def test_failure_readiness(
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    issued_before: timedelta,
    tamper: str | None,
    ready: tuple[str, str, str],
    wake: datetime | None,
) -> None:
    spec = spec_of(duration="1h")
    body = secret_body(spec, root, intermediate, issued_at=NOW - issued_before)
    if tamper is not None:
        body["data"][tamper] = base64.b64encode(b"garbage").decode()
    readiness = status.failure_readiness(judged(spec, contents_of(body), root), FAILURE)
    assert readiness.condition is not None
    state, reason, message = ready
    assert (readiness.condition.status, readiness.condition.reason) == (state == "True", reason)
    assert readiness.condition.message == message
    assert readiness.wake == wake


def test_failure_readiness_without_a_secret(root: ca.CAKeyPair) -> None:
    readiness = status.failure_readiness(judged(spec_of(), None, root), FAILURE)
    assert readiness == status.Readiness(
        status.conditions.Condition(
            "Ready",
            False,
            "IssuanceFailed",
            f"Secret web-tls does not exist; issuing a new one failed: {FAILURE}",
        ),
        None,
    )


@pytest.mark.parametrize(
    ("not_after", "readiness"),
    [
        pytest.param(
            None,
            status.Readiness(
                status.conditions.Condition("Ready", False, "IssuanceFailed", FAILURE), None
            ),
            id="no certificate recorded",
        ),
        pytest.param(
            "2026-06-01T11:00:00Z",
            status.Readiness(
                status.conditions.Condition(
                    "Ready",
                    False,
                    "Expired",
                    f"the certificate expired at 2026-06-01T11:00:00Z; issuing a new one "
                    f"failed: {FAILURE}",
                ),
                None,
            ),
            id="recorded one expired",
        ),
        pytest.param(
            "2026-06-01T12:00:00Z",
            status.Readiness(None, NOW + timedelta(seconds=1)),
            id="valid through notAfter itself: Ready left as it is",
        ),
        pytest.param(
            "2026-06-02T00:00:00Z",
            status.Readiness(None, NOW + timedelta(hours=12, seconds=1)),
            id="still valid",
        ),
    ],
)
def test_unread_readiness(not_after: str | None, readiness: status.Readiness) -> None:
    before = {} if not_after is None else {"notAfter": not_after}
    assert status.unread_readiness(before, NOW, FAILURE) == readiness


def test_failed_without_a_secret_read_counts_attempts_and_backs_off() -> None:
    before = {
        "conditions": [
            condition("Issuing", "False", "IssuanceFailed", FAILURE, EARLIER),
            condition("Ready", "False", "IssuanceFailed", FAILURE, EARLIER),
        ],
        "failedIssuanceAttempts": 3,
        "lastFailureTime": EARLIER,
    }
    failure = status.failed(
        observed(before), "IssuanceFailed", FAILURE, NOW, None, seal_key=None, jitter=1.0
    )
    assert failure.attempts == 4 and failure.ready is False
    assert failure.outcome == status.Outcome(
        status={
            "conditions": before["conditions"],
            "lastFailureTime": T,
            "failedIssuanceAttempts": 4,
        },
        next_check=NOW + timedelta(seconds=16),
    )


def test_failed_with_a_usable_certificate_stays_ready_until_it_expires(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    spec = spec_of(duration="1h")
    # Issued at 11:00:30 for an hour: notAfter 12:00:30, 30 s from now.
    body = secret_body(spec, root, intermediate, issued_at=NOW - timedelta(minutes=59, seconds=30))
    before = {"conditions": ready_conditions(EARLIER), "failedIssuanceAttempts": 9}
    failure = status.failed(
        observed(before),
        "SecretConflict",
        "Secret web-tls is immutable",
        NOW,
        judged(spec, contents_of(body), root),
        seal_key=None,
        jitter=1.0,
    )
    assert failure.attempts == 10 and failure.ready is True
    assert failure.outcome == status.Outcome(
        status={
            "conditions": [
                condition(
                    "Issuing", "False", "SecretConflict", "Secret web-tls is immutable", EARLIER
                ),
                condition(
                    "Ready",
                    "True",
                    "Issued",
                    "the certificate is valid until 2026-06-01T12:00:30Z; re-issuing it failed "
                    "(see the Issuing condition): Secret web-tls is immutable",
                    EARLIER,
                ),
            ],
            "lastFailureTime": T,
            "failedIssuanceAttempts": 10,
        },
        # The back-off would say 5 minutes; Ready must turn False after notAfter.
        next_check=NOW + timedelta(seconds=31),
    )


def test_reissued_at_once_names_the_check_that_would_fire() -> None:
    again = policies.Decision(policies.Action.ISSUE, "SpecChanged", "the spec changed")
    assert status.reissued_at_once(again) == (
        "the certificate just issued would be re-issued at once (SpecChanged: the spec changed)"
    )


# --- the Certificate as read -----------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "never_issued"),
    [
        ({}, True),
        ({"conditions": ready_conditions()}, True),
        ({"revision": 1}, False),
        ({"serialNumber": "0a"}, False),
    ],
)
def test_observed(before: dict[str, Any], never_issued: bool) -> None:
    seen = observed(
        before, annotations={"certsmith.dev/renew-requested-at": "2026-06-01T10:00:00Z"}
    )
    assert (seen.namespace, seen.name, seen.generation) == ("shop", "web", 3)
    assert seen.jitter_key == "shop/web"
    assert seen.renewal_request == "2026-06-01T10:00:00Z"
    assert seen.created == NOW - timedelta(hours=1)
    assert seen.never_issued is never_issued


def test_a_revoked_certificate_is_not_ready(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> None:
    spec = spec_of(duration="1h")
    held = policies.readable(judged(spec, contents_of(secret_body(spec, root, intermediate)), root))
    assert isinstance(held, policies.Held)
    ready = status.ready(observed(), spec, held, NOW, None, revoked_by="cluster-root")
    assert ready.outcome.status is not None
    found = {c["type"]: c for c in ready.outcome.status["conditions"]}
    serial = inspect.serial_hex(held.leaf)
    assert (found["Ready"]["status"], found["Ready"]["reason"], found["Ready"]["message"]) == (
        "False",
        "Revoked",
        f"serial {serial} is revoked: the CRL of CertificateAuthority cluster-root lists it; "
        "`kubectl certsmith renew web` issues a new one",
    )
    assert found["Issuing"]["status"] == "False"
    assert ready.outcome.status["serialNumber"] == serial


LIES = {
    "notBefore": "2026-01-01T00:00:00Z",
    "notAfter": "2099-01-01T00:00:00Z",
    "renewalTime": "2098-01-01T00:00:00Z",
    "serialNumber": "0badc0de",
    "revision": 9,
    "lastFailureTime": EARLIER,
    "failedIssuanceAttempts": 1,
}


@pytest.mark.parametrize(
    ("before", "kept"),
    [
        pytest.param(sealed({**RESUMABLE, **LIES}), LIES, id="sealed by certsmith: kept"),
        pytest.param({**sealed(RESUMABLE), **LIES}, {}, id="edited over a seal: removed"),
        pytest.param({**RESUMABLE, **LIES}, {}, id="never sealed: removed"),
    ],
)
def test_a_refusal_seals_only_what_certsmith_wrote(
    before: dict[str, Any], kept: dict[str, Any]
) -> None:
    outcome = status.not_ready(
        observed(before), "PolicyDenied", DENIED, NOW, retry=None, seal_key=KEY
    )
    assert outcome.status is not None
    after = {k: v for k, v in {**before, **outcome.status}.items() if v is not None}
    assert {field: after.get(field) for field in LIES} == {field: kept.get(field) for field in LIES}
    assert not status.edited(observed(after), KEY, created=False)


@pytest.mark.parametrize(
    ("before", "ready_reason"),
    [
        pytest.param(sealed({**RESUMABLE, **LIES}), "Issued", id="sealed notAfter: Ready stays"),
        pytest.param({**sealed(RESUMABLE), **LIES}, "IssuanceFailed", id="edited: not Ready"),
    ],
)
def test_a_failure_without_the_secret_trusts_only_a_sealed_not_after(
    before: dict[str, Any], ready_reason: str
) -> None:
    failure = status.failed(observed(before), "IssuanceFailed", FAILURE, NOW, None, seal_key=KEY)
    assert failure.outcome.status is not None
    found = {c["type"]: c for c in failure.outcome.status["conditions"]}
    assert found["Ready"]["reason"] == ready_reason
    assert failure.outcome.status.get("notAfter", LIES["notAfter"]) == (
        LIES["notAfter"] if ready_reason == "Issued" else None
    )
