"""Certificate admission inside the apiserver, in CEL: what needs no grant.

One CEL predicate over the object and the request (`judged_in_cel`) divides the work. A
spec that CEL can prove `model.parse_certificate_spec` accepts (see `_spec_judged_in_cel`)
and whose every name is the namespace's own (`_own_names`: its services, and its SPIFFE
IDs under the trust domain, as isolation.evaluate judges them without any grant) is
admitted without calling the webhook. So is a Certificate in the operator's own namespace,
which the ValidatingAdmissionPolicy below refuses whatever it says
(isolation.operator_namespace_refusal, same message). Everything else, every name that
needs a grant of a CertificateAuthority included, goes to the Python webhook
(webhook_config.validating_match_conditions), which reads the authority and the namespace
fresh and judges as the operator does. A spec left unchanged by an UPDATE goes to neither.

The policy and its binding are the install's, as the webhook configurations are:
hack/render-chart writes `policy` and `binding` into the chart (files/admission-policy.yaml,
for the release namespace) and manifests/admission-policy.yaml; the operator never creates,
repairs or deletes them.

Every length, count and character class below is the one of the Python rule it stands
for (model, isolation), or narrower: a spec outside it goes to the webhook, never admitted
on a looser rule.
"""

from __future__ import annotations

from typing import Any

from certsmith.api import model, names
from certsmith.certificates import isolation
from certsmith.enrolment.decision import AUTO_APPROVED

POLICY_NAME = "certsmith.dev"
MAX_JUDGED_SANS = 100
"""The most entries of one SAN list CEL judges: pairwise duplicate checks cost
O(n²) of the apiserver's CEL budget (1000 names exceed it); larger lists go to the webhook."""
MAX_DNS_NAME = 253  # model.is_dns_name
MAX_COMMON_NAME = 64  # model: spec.commonName
MAX_DNS1123 = 253  # model._is_dns1123 (issuerRef.name, secretTemplate key prefixes)
MAX_EMAIL, MAX_EMAIL_LOCAL = 254, 64  # model._email
MAX_SERIAL_NUMBER = 64  # model: spec.subject.serialNumber

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_ANY_CASE_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$"
_NUMERIC = r"^(\*\.)?[0-9.]+$"  # could be an IP address: left to the webhook
_DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SPIFFE_SEGMENTS = r"^(/[A-Za-z0-9._-]+)+$"
_DOT_SEGMENT = r"/\.\.?(/|$)"
_QUALIFIED = r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
_TEMPLATE_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
_SERIAL_NUMBER = r"^[A-Za-z0-9 '()+,\-./:=?]+$"
_WHOLE_MILLISECONDS = r"^([0-9]+(ms|s|m|h))+$"


def _raw(regex: str) -> str:
    """`regex` as a CEL raw string literal (no escapes to double)."""
    quote = "'" if "'" not in regex else '"'
    return f"r{quote}{regex}{quote}"


def _dns_ok(value: str, most: int) -> str:
    return (
        f"size({value}) <= {most} && {value}.matches({_raw(_DNS_NAME)}) && "
        f"!{value}.matches({_raw(_NUMERIC)})"
    )


def _unique(items: str, var: str, other: str, equal: str) -> str:
    return f"{items}.all({var}, {items}.exists_one({other}, {equal}))"


def _optional_list(field: str, rule: str) -> str:
    items = f"object.spec.{field}"
    judged = rule.replace("{items}", items)
    return f"(!has({items}) || size({items}) <= {MAX_JUDGED_SANS} && {judged})"


def _none(field: str) -> str:
    return f"(!has(object.spec.{field}) || size(object.spec.{field}) == 0)"


def _template_key(key: str) -> str:
    """CEL: `key` is [dns1123-prefix/]qualified-name, the prefix at most MAX_DNS1123 (the
    regex allows at most one '/', so its index is the prefix's length)."""
    return f"{key}.matches({_raw(_TEMPLATE_KEY)}) && {key}.indexOf('/') <= {MAX_DNS1123}"


def _spec_judged_in_cel() -> list[str]:
    """CEL conditions over `object` under which model.parse_certificate_spec accepts the
    spec, given what the Certificate CRD's schema and rules already refused. Each is
    sufficient, not necessary: a spec failing one is judged by the webhook. Only DNS names
    and URIs are judged here (the names a namespace may own); emailAddresses and
    ipAddresses always need a grant, so a spec with any goes to the webhook."""
    labels = "object.spec.secretTemplate.labels"
    annotations = "object.spec.secretTemplate.annotations"
    subject = "object.spec.subject"
    subject_lists = " && ".join(
        f"(!has({subject}.{key}) || {subject}.{key}.all(v, size(v) > 0 && size(v) <= {limit}"
        + (f" && v.matches({_raw('^[A-Z]{2}$')})" if key == "countries" else "")
        + "))"
        for key, _, limit in model._SUBJECT_FIELDS
    )
    return [
        "(!has(object.spec.issuerRef) || !has(object.spec.issuerRef.name) || "
        f"size(object.spec.issuerRef.name) <= {MAX_DNS1123} && "
        f"object.spec.issuerRef.name.matches({_raw(_DNS1123)}))",
        f"(!has(object.spec.commonName) || {_dns_ok('object.spec.commonName', MAX_COMMON_NAME)})",
        _optional_list(
            "dnsNames",
            "{items}.all(n, "
            + _dns_ok("n", MAX_DNS_NAME)
            + ") && "
            + _unique("{items}", "n", "m", "m == n"),
        ),
        # At most one SPIFFE ID, each segment as model.parse_spiffe_id accepts.
        "(!has(object.spec.uris) || size(object.spec.uris) <= 1)",
        _none("emailAddresses"),
        _none("ipAddresses"),
        f"(!has({subject}) || has(object.spec.commonName) && {subject_lists} && "
        f"(!has({subject}.serialNumber) || size({subject}.serialNumber) <= {MAX_SERIAL_NUMBER} "
        f"&& {subject}.serialNumber.matches({_raw(_SERIAL_NUMBER)})))",
        *(
            f"(!has(object.spec.{key}) || object.spec.{key}.matches({_raw(_WHOLE_MILLISECONDS)}))"
            for key in ("duration", "renewBefore")
        ),
        "(!has(object.spec.usages) || !object.spec.usages.exists(u, u in "
        f"[{', '.join(repr(u) for u in sorted(model.CA_USAGES))}]))",
        f"(!has(object.spec.secretTemplate) || !has({labels}) || {labels}.all(k, "
        f"{_template_key('k')} && !k.startsWith('{names.CERTSMITH_PREFIX}') && "
        f"k != '{names.MANAGED_BY_LABEL}' && "
        f"({labels}[k] == '' || {labels}[k].matches({_raw(_QUALIFIED)}))))",
        f"(!has(object.spec.secretTemplate) || !has({annotations}) || "
        f"{annotations}.all(k, {_template_key('k')} && "
        f"!k.startsWith('{names.CERTSMITH_PREFIX}') && "
        f"!k.startsWith('{names.CERT_MANAGER_PREFIX}')))",
    ]


def _own_names(trust_domain: str) -> str:
    """CEL over `object` and `request`, for a spec `_spec_judged_in_cel` accepts: every DNS
    name (the commonName too) and URI is the namespace's own, as isolation._own_dns_name
    and isolation._own_uri judge them: one label (a service, or `*`) in `<ns>.svc` or
    `<ns>.svc.<cluster domain>`; a SPIFFE ID `spiffe://<trust domain>/ns/<ns>/<segment>...`.
    The short form `<svc>.<ns>` is left to the webhook: whether `<ns>` may be a zone of its
    own depends on the Public Suffix List (isolation.short_form_refusal), ~1,500 names that
    would make this condition ~40 KB."""
    namespace = "request.namespace"
    zones = f"[{namespace} + '.svc', {namespace} + '.svc.{isolation.CLUSTER_DOMAIN}']"

    def own_dns(name: str) -> str:
        return (
            f"{zones}.exists(z, {name}.endsWith('.' + z) && size({name}) > size(z) + 1 && "
            f"!{name}.substring(0, size({name}) - size(z) - 1).contains('.'))"
        )

    prefix = f"'{model.SPIFFE_PREFIX}{trust_domain}/ns/' + {namespace}"
    own_uri = (
        f"u.startsWith({prefix} + '/') && "
        f"u.substring(size({prefix})).matches({_raw(_SPIFFE_SEGMENTS)}) && "
        f"!u.matches({_raw(_DOT_SEGMENT)})"
    )
    return (
        f"(!has(object.spec.commonName) || {own_dns('object.spec.commonName')}) && "
        f"(!has(object.spec.dnsNames) || object.spec.dnsNames.all(n, {own_dns('n')})) && "
        f"(!has(object.spec.uris) || object.spec.uris.all(u, {own_uri}))"
    )


def judged_in_cel(operator_namespace: str, trust_domain: str) -> str:
    """The CEL predicate (over `object` and `request`) true when the webhook is not
    called: a Certificate in the operator's namespace (the policy refuses it), or a spec
    CEL proves valid that names only the namespace's own services and SPIFFE IDs under
    `trust_domain` (admitted: no grant is needed)."""
    conditions = [*_spec_judged_in_cel(), _own_names(trust_domain)]
    return f"request.namespace == '{operator_namespace}' || " + " && ".join(conditions)


SPEC_CHANGED = "request.operation == 'CREATE' || object.spec != oldObject.spec"
"""Only a new or changed spec is judged: metadata edits must stay possible on a Certificate
admitted earlier (under other grants, or while admission was off)."""


STATUS_WRITE = "has(request.subResource) && request.subResource == 'status'"
"""CEL: the request writes the status subresource (the apiserver leaves `subResource` out
of the request when there is none, so it is tested with has())."""
JUDGED = f"{STATUS_WRITE} || {SPEC_CHANGED}"
"""What the ValidatingAdmissionPolicy looks at: a new or changed spec (Certificates and
CertificateRequests), and a CertificateRequest's status write (its only matched
subresource), where approval is decided."""

_DECISION_TYPES = "c.type == 'Approved' || c.type == 'Denied'"
_DECISION = (
    f"{{obj}}.status.conditions.filter(c, {_DECISION_TYPES})"
    ".map(c, c.type + '=' + c.status + '/' + (has(c.reason) ? c.reason : ''))"
)
SIGNED_FIELDS = ("certificate", "ca", "notBefore", "notAfter", "serialNumber")
"""The status fields only a holder of `sign` writes (with every condition but the
decision); the CRD's status schema has no others (unknown fields are pruned)."""


def _decision(obj: str) -> str:
    """CEL: the Approved and Denied conditions of `obj` (type=status/reason), [] if none."""
    guard = f"has({obj}.status) && has({obj}.status.conditions)"
    return f"{guard} ? {_DECISION.format(obj=obj)} : []"


def _present(obj: str, field: str) -> str:
    return f"(has({obj}.status) && has({_status(obj)}.{field}))"


def _status(obj: str) -> str:
    """`obj`'s status as dyn: the policy matches Certificates too, whose schema has no
    certificate or ca, and the apiserver type-checks every expression against each matched
    kind (a warning per kind); these rules are evaluated for CertificateRequests only."""
    return f"dyn({obj}).status"


def _signed_part_unchanged() -> str:
    """CEL: the status is the old one but for the Approved and Denied conditions: every
    SIGNED_FIELDS field present in both with the same value, or absent from both, and the
    other conditions (Ready, …) the same list."""
    fields = [
        f"{_present('object', f)} == {_present('oldObject', f)} && "
        f"(!{_present('object', f)} || {_status('object')}.{f} == {_status('oldObject')}.{f})"
        for f in SIGNED_FIELDS
    ]

    def others(obj: str) -> str:
        return (
            f"(has({obj}.status) && has({obj}.status.conditions) ? "
            f"{obj}.status.conditions.filter(c, !({_DECISION_TYPES})) : [])"
        )

    return (
        " && ".join(f"({f})" for f in fields) + f" && {others('object')} == {others('oldObject')}"
    )


def _authorized(verb: str, *, namespaced: bool) -> str:
    """CEL: the requester holds `verb` on certificateauthorities/<spec.issuerRef.name> in
    certsmith.dev (`namespaced`: a RoleBinding in the request's namespace counts too)."""
    namespace = ".namespace(object.metadata.namespace)" if namespaced else ""
    return (
        f"authorizer.group('{names.GROUP}').resource('{names.AUTHORITIES}'){namespace}"
        f".name(object.spec.issuerRef.name).check('{verb}').allowed()"
    )


APPROVAL_AUTHORIZED = _authorized(names.APPROVE_VERB, namespaced=True)
"""CEL: the requester may approve for the request's authority: RBAC verb `approve` on
`certificateauthorities` (resourceName: the authority) in certsmith.dev, granted
cluster-wide or in the request's namespace, as Kubernetes' `approve` on `signers` for
CertificateSigningRequests."""
SIGN_AUTHORIZED = _authorized(names.SIGN_VERB, namespaced=False)
"""CEL: the requester may write what signing writes (RBAC verb `sign` on the authority,
cluster-wide: the operator's ClusterRole), as Kubernetes' `sign` on `signers` for a
CertificateSigningRequest's status.certificate."""

_WHO = "request.userInfo.username"
_AUTHORITY_REF = f"' on {names.AUTHORITIES}.{names.GROUP}/' + object.spec.issuerRef.name"


def _status_validations() -> list[dict[str, str]]:
    """The rules of a CertificateRequest's status write, judged on the whole old and new
    objects (so also when the status is emptied, which the CRD's transition rules do not
    see): the decision is final and the certificate never changes (for everyone); a
    decision needs `approve` (AutoApproved, certsmith's own reason, needs `sign`); any other
    change needs `sign`."""
    status_write = f"!({STATUS_WRITE}) || "
    changed = "variables.decision == variables.oldDecision"
    return [
        {
            "expression": f"{status_write}size(variables.oldDecision) == 0 || {changed}",
            "message": (
                "status.conditions: the Approved or Denied decision is final: it cannot be "
                "removed or changed, nor the status emptied; create a new CertificateRequest"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": (
                f"{status_write}!{_present('oldObject', 'certificate')} || "
                f"{_present('object', 'certificate')} && "
                f"{_status('object')}.certificate == {_status('oldObject')}.certificate"
            ),
            "message": (
                "status.certificate: a request is signed once; its certificate can never be "
                "removed or changed: create a new CertificateRequest"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": f"{status_write}{changed} || {APPROVAL_AUTHORIZED}",
            "messageExpression": (
                f"'status.conditions: ' + {_WHO} + ' may not approve or deny "
                "CertificateRequests of CertificateAuthority ' + object.spec.issuerRef.name + "
                f"' in namespace ' + object.metadata.namespace + ': that needs the verb "
                f"{names.APPROVE_VERB}' + {_AUTHORITY_REF}"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": (
                f"{status_write}{changed} || "
                f"!variables.decision.exists(d, d.endsWith('/{AUTO_APPROVED}')) || "
                f"{SIGN_AUTHORIZED}"
            ),
            "messageExpression": (
                f"'status.conditions: reason {AUTO_APPROVED} is certsmith\\'s own (every name "
                f"is the namespace\\'s to carry); ' + {_WHO} + ' may approve with another "
                "reason, e.g. PartnerVerified'"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": f"{status_write}variables.signedPartUnchanged || {SIGN_AUTHORIZED}",
            "messageExpression": (
                f"'status: ' + {_WHO} + ' may only add the Approved or Denied condition to a "
                "CertificateRequest\\'s status, keeping the rest; the certificate, ca, "
                "notBefore, notAfter, serialNumber and the other conditions are written by "
                f"certsmith (verb {names.SIGN_VERB}' + {_AUTHORITY_REF} + ')'"
            ),
            "reason": "Forbidden",
        },
    ]


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "certsmith"}


def policy(*, operator_namespace: str) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) refusing, with HTTP
    403: a new or changed Certificate or CertificateRequest in the operator's namespace,
    with isolation.operator_namespace_refusal's message (the one rule of namespace
    isolation no grant lifts); and a CertificateRequest's status write that breaks
    _status_validations (a decision removed or changed, the certificate changed, a decision
    without the verb `approve` on its authority, anything else without `sign`)."""
    refusal = isolation.operator_namespace_refusal(operator_namespace, operator_namespace)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": _labels()},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [names.GROUP],
                        "apiVersions": [names.VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [
                            names.CERTIFICATES,
                            names.CERTIFICATE_REQUESTS,
                            f"{names.CERTIFICATE_REQUESTS}/status",
                        ],
                    }
                ]
            },
            "matchConditions": [{"name": "spec-changed-or-decision", "expression": JUDGED}],
            "variables": [
                {"name": "decision", "expression": _decision("object")},
                {"name": "oldDecision", "expression": _decision("oldObject")},
                {"name": "signedPartUnchanged", "expression": _signed_part_unchanged()},
            ],
            "validations": [
                {
                    "expression": (
                        f"{STATUS_WRITE} || request.namespace != '{operator_namespace}'"
                    ),
                    "message": refusal,
                    "reason": "Forbidden",
                },
                *_status_validations(),
            ],
        },
    }


def binding() -> dict[str, Any]:
    """The binding that enforces `policy` (Deny) for every namespace."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": _labels()},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
