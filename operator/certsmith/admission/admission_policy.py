"""The ValidatingAdmissionPolicy that judges Certificates inside the apiserver, in CEL.

Admission of a Certificate is split in two, by one CEL predicate over the object
(`judged_in_cel`): a spec that CEL can prove `model.parse_certificate_spec` accepts
(lowercase DNS names, at most one SPIFFE ID, plain emails and IP addresses, see
`_spec_judged_in_cel`), in a namespace other than the operator's, is judged by the policy
below (namespace isolation and the CertificateAuthority's grants, as
`isolation.evaluate` judges them, with the same messages); any other spec goes to the
Python webhook (webhook_config.validating_configuration, matchConditions), which judges
everything as before. A spec left unchanged by an UPDATE goes to neither.

The policy's param is the CertificateAuthority: the binding selects every authority and
the expression judges only against the one named by spec.issuerRef.name (cluster-root by
default); none existing admits, as the webhook did (the operator judges again before
signing). Grant patterns have the forms isolation.parse_grants accepts, which both match
alike.
"""

from __future__ import annotations

from typing import Any

from certsmith.api import model, names
from certsmith.certificates import isolation

POLICY_NAME = "certsmith.dev"
MAX_JUDGED_SANS = 100
"""The most entries of one SAN list CEL judges: pairwise duplicate checks cost
O(n²) of the apiserver's CEL budget (1000 names exceed it); larger lists go to the webhook."""
MAX_MESSAGE = 5000
"""The longest refusal the policy may have to give: the apiserver gives up a
messageExpression longer than 5 KiB (celconfig.MaxEvaluatedMessageExpressionSizeBytes,
5120) for the bare expression, so a spec whose every name could be refused beyond this goes
to the webhook."""
# Per name, an upper bound of the message around it: the field, the rule, the namespace
# (thrice, with a short-form refusal) and the separator.
_AROUND_NAME = "(200 + 3 * size(request.namespace))"
_AROUND_ADDRESS = 140  # the canonical IPv6 text may be longer than the spec's

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_ANY_CASE_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$"
_NUMERIC = r"^(\*\.)?[0-9.]+$"  # could be an IP address: left to the webhook
_DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SPIFFE_ID = r"^spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._-]+)+$"
_DOT_SEGMENT = r"/\.\.?(/|$)"
_EMAIL = rf"^[A-Za-z0-9_+=-]+(\.[A-Za-z0-9_+=-]+)*@{_ANY_CASE_LABEL}(\.{_ANY_CASE_LABEL})*$"
_IP_TEXT = r"^[0-9.]+$|^[0-9a-fA-F:]+$"
_QUALIFIED = r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
_TEMPLATE_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
_SERIAL_NUMBER = r"^[A-Za-z0-9 '()+,\-./:=?]+$"
_WHOLE_MILLISECONDS = r"^([0-9]+(ms|s|m|h))+$"
_SUBJECT_LISTS = (
    *("organizations", "organizationalUnits", "localities", "provinces"),
    *("streetAddresses", "postalCodes", "countries"),
)


def _raw(regex: str) -> str:
    """`regex` as a CEL raw string literal (no escapes to double)."""
    quote = "'" if "'" not in regex else '"'
    return f"r{quote}{regex}{quote}"


def _dns_ok(value: str) -> str:
    return f"{value}.matches({_raw(_DNS_NAME)}) && !{value}.matches({_raw(_NUMERIC)})"


def _unique(items: str, var: str, other: str, equal: str) -> str:
    return f"{items}.all({var}, {items}.exists_one({other}, {equal}))"


def _optional_list(field: str, rule: str) -> str:
    items = f"object.spec.{field}"
    judged = rule.replace("{items}", items)
    return f"(!has({items}) || size({items}) <= {MAX_JUDGED_SANS} && {judged})"


def _spec_judged_in_cel() -> list[str]:
    """CEL conditions over `object` under which model.parse_certificate_spec accepts the
    spec, given what the Certificate CRD's schema and rules already refused. Each is
    sufficient, not necessary: a spec failing one is judged by the webhook."""
    template_key = f"k.matches({_raw(_TEMPLATE_KEY)})"
    labels = "object.spec.secretTemplate.labels"
    annotations = "object.spec.secretTemplate.annotations"
    subject = "object.spec.subject"
    subject_lists = " && ".join(
        f"(!has({subject}.{key}) || {subject}.{key}.all(v, size(v) > 0"
        + (f" && v.matches({_raw('^[A-Z]{2}$')})" if key == "countries" else "")
        + "))"
        for key in _SUBJECT_LISTS
    )
    return [
        "(!has(object.spec.issuerRef) || !has(object.spec.issuerRef.name) || "
        f"object.spec.issuerRef.name.matches({_raw(_DNS1123)}))",
        f"(!has(object.spec.commonName) || {_dns_ok('object.spec.commonName')})",
        _optional_list(
            "dnsNames",
            "{items}.all(n, " + _dns_ok("n") + ") && " + _unique("{items}", "n", "m", "m == n"),
        ),
        _optional_list(
            "ipAddresses",
            "{items}.all(a, a.matches("
            + _raw(_IP_TEXT)
            + ") && isIP(a)) && "
            + _unique("{items}", "a", "b", "ip(b) == ip(a)"),
        ),
        "(!has(object.spec.uris) || size(object.spec.uris) <= 1 && object.spec.uris.all(u, "
        f"u.matches({_raw(_SPIFFE_ID)}) && !u.matches({_raw(_DOT_SEGMENT)})))",
        _optional_list(
            "emailAddresses",
            "{items}.all(e, e.matches("
            + _raw(_EMAIL)
            + ") && e.indexOf('@') <= 64 && size(e) <= 254 && !e.matches(r'@[0-9.]+$')) && "
            + _unique("{items}", "e", "f", "f == e"),
        ),
        f"(!has({subject}) || has(object.spec.commonName) && {subject_lists} && "
        f"(!has({subject}.serialNumber) || {subject}.serialNumber.matches("
        f"{_raw(_SERIAL_NUMBER)})))",
        *(
            f"(!has(object.spec.{key}) || object.spec.{key}.matches({_raw(_WHOLE_MILLISECONDS)}))"
            for key in ("duration", "renewBefore")
        ),
        "(!has(object.spec.usages) || !object.spec.usages.exists(u, u == 'cert sign'))",
        f"(!has(object.spec.secretTemplate) || !has({labels}) || {labels}.all(k, {template_key} && "
        f"!k.startsWith('{names.CERTSMITH_PREFIX}') && k != '{names.MANAGED_BY_LABEL}' && "
        f"({labels}[k] == '' || {labels}[k].matches({_raw(_QUALIFIED)}))))",
        f"(!has(object.spec.secretTemplate) || !has({annotations}) || "
        f"{annotations}.all(k, {template_key} && "
        f"!k.startsWith('{names.CERTSMITH_PREFIX}') && "
        f"!k.startsWith('{names.CERT_MANAGER_PREFIX}')))",
    ]


def _message_bound() -> str:
    """CEL: an upper bound of the policy's message length, were every name refused."""
    spec = "object.spec"
    lists = " + ".join(
        f"(has({spec}.{key}) ? {spec}.{key}.map(v, size(v)).sum() + "
        f"size({spec}.{key}) * {around} : 0)"
        for key, around in (
            ("dnsNames", _AROUND_NAME),
            ("uris", _AROUND_NAME),
            ("emailAddresses", _AROUND_ADDRESS),
            ("ipAddresses", _AROUND_ADDRESS),
        )
    )
    common_name = f"(has({spec}.commonName) ? size({spec}.commonName) + {_AROUND_NAME} : 0)"
    return f"{lists} + {common_name} <= {MAX_MESSAGE}"


def judged_in_cel(operator_namespace: str) -> str:
    """The CEL predicate (over `object` and `request`) true when the policy judges the
    Certificate and the webhook is not called: a spec CEL proves valid, outside the
    operator's own namespace (isolation.operator_namespace_refusal, left to the webhook),
    whose refusal would fit MAX_MESSAGE."""
    conditions = [
        f"request.namespace != '{operator_namespace}'",
        *_spec_judged_in_cel(),
        _message_bound(),
    ]
    return " && ".join(conditions)


SPEC_CHANGED = "request.operation == 'CREATE' || object.spec != oldObject.spec"
"""Only a new or changed spec is judged: metadata edits must stay possible on a Certificate
admitted earlier (under other grants, or while admission was off)."""


def _short_form_refusal(special_use: list[str], cluster_labels: list[str], tlds: list[str]) -> str:
    """CEL for isolation.short_form_refusal(request.namespace), '' when None."""
    namespace = "request.namespace"
    return (
        f"{namespace} in {special_use} ? {namespace} + ' is a special-use domain name' : "
        f"{namespace} in {cluster_labels} ? {namespace} + \" is a label of the cluster's own "
        f'zones (svc.{isolation.CLUSTER_DOMAIN})" : '
        f"{namespace} in {tlds} ? {namespace} + ' is a top-level domain of the Public "
        "Suffix List' : ''"
    )


def _selector_matches(selector: str, labels: str) -> str:
    """CEL for isolation.selector_matches(selector, labels)."""
    expression = (
        f"e.operator == 'In' ? (e.key in {labels} && {labels}[e.key] in e.values) : "
        f"e.operator == 'NotIn' ? !(e.key in {labels} && {labels}[e.key] in e.values) : "
        f"e.operator == 'Exists' ? e.key in {labels} : "
        f"e.operator == 'DoesNotExist' ? !(e.key in {labels}) : false"
    )
    return (
        f"(!has({selector}.matchLabels) || {selector}.matchLabels.all(k, k in {labels} && "
        f"{labels}[k] == {selector}.matchLabels[k])) && "
        f"(!has({selector}.matchExpressions) || {selector}.matchExpressions.all(e, {expression}))"
    )


def _anchored(regex: str) -> str:
    return _raw(f"^({regex})$")


def _grant_patterns_valid(grant: str) -> str:
    """CEL for isolation._check_patterns(grant) passing: every pattern of the grant in a
    form both match exactly (a grant with one malformed pattern makes the authority grant
    nothing, here as in isolation.parse_grants)."""
    printable = _anchored(isolation.PRINTABLE_ASCII)
    return (
        f"(!has({grant}.dnsNames) || {grant}.dnsNames.all(p, size(p) <= 253 && "
        f"p.lowerAscii().matches({_anchored(isolation.DNS_PATTERN)}))) && "
        f"(!has({grant}.uris) || {grant}.uris.all(p, p.matches({printable}) && "
        f"p.matches({_anchored(isolation.URI_PATTERN)}) && "
        f"(!p.lowerAscii().startsWith('spiffe:') || "
        f"p.matches({_anchored(isolation.SPIFFE_PATTERN)})))) && "
        f"(!has({grant}.emailAddresses) || {grant}.emailAddresses.all(p, "
        f"p.lowerAscii().matches({_anchored(isolation.EMAIL_PATTERN)}))) && "
        f"(!has({grant}.ipRanges) || {grant}.ipRanges.all(p, "
        f"p.matches({_anchored(isolation.IP_RANGE)}) && (isCIDR(p) || isIP(p))))"
    )


def _dns_refused(name: str, dns_pattern: str) -> str:
    """CEL: the DNS name `name` is neither the namespace's own nor granted."""
    return (
        f"!variables.zones.exists(z, size({name}) > size(z) + 1 && {name}.endsWith('.' + z) && "
        f"!{name}.substring(0, size({name}) - size(z) - 1).contains('.')) && "
        "!variables.applicable.exists(g, has(g.dnsNames) && g.dnsNames.exists(p, "
        f"{name}.matches({dns_pattern})))"
    )


def _dns_message(field: str, name: str, rule: str) -> str:
    """CEL: str(isolation.Violation) for the DNS name `name` at `field`."""
    return (
        f'{field} + ": \'" + {name} + "\' is not allowed in this namespace (" + {rule} + '
        f"(variables.refusal != '' && {name}.endsWith('.' + request.namespace) ? '; ' + "
        "request.namespace + ' is no zone of its own: ' + variables.refusal : '') + ')'"
    )


def _variables(trust_domain: str) -> list[dict[str, str]]:
    """The policy's variables: the Certificate's names and what the param grants them."""
    refusal = _short_form_refusal(
        sorted(isolation.SPECIAL_USE_NAMES),
        sorted({"svc", *isolation.CLUSTER_DOMAIN.split(".")}),
        sorted(isolation.public_suffix_tlds()),
    )
    rule = "'namespace ' + request.namespace + ' may name its own services and SPIFFE IDs only'"
    not_allowed = '"\' is not allowed in this namespace ("'
    dns_pattern = "'^' + p.lowerAscii().replace('.', r'\\.').replace('*', '[^.]*') + '$'"
    spiffe_path = "'^' + {}.replace('.', r'\\.').replace('*', '.*') + '$'"
    email_pattern = (
        "'^' + p.lowerAscii().replace('.', r'\\.').replace('+', r'\\+')"
        ".replace('*', '.*').replace('?', '.') + '$'"
    )
    # A pattern's host and path: spiffe://<host>[/<path>] (SPIFFE_PATTERN).
    host = "p.substring(9).split('/')[0]"
    path = "p.substring(9 + size(" + host + "))"
    spiffe_prefix = f"spiffe://{trust_domain}/ns/"
    variables = {
        "issuer": "has(object.spec.issuerRef) && has(object.spec.issuerRef.name) ? "
        f"object.spec.issuerRef.name : '{model.DEFAULT_ISSUER}'",
        "mine": "params.metadata.name == variables.issuer",
        "labels": "has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}",
        "grants": "has(params.spec) && has(params.spec.policy) && "
        "has(params.spec.policy.grants) ? params.spec.policy.grants : []",
        "applicable": f"variables.grants.all(g, {_grant_patterns_valid('g')}) ? "
        "variables.grants.filter(g, "
        + _selector_matches("g.namespaceSelector", "variables.labels")
        + ") : []",
        "refusal": refusal,
        "zones": "variables.refusal == '' ? "
        "[request.namespace, request.namespace + '.svc', "
        f"request.namespace + '.svc.{isolation.CLUSTER_DOMAIN}'] : "
        f"[request.namespace + '.svc', request.namespace + '.svc.{isolation.CLUSTER_DOMAIN}']",
        "dnsViolations": "(has(object.spec.dnsNames) ? object.spec.dnsNames.filter(n, "
        + _dns_refused("n", dns_pattern)
        + ").map(n, "
        + _dns_message(
            "'spec.dnsNames[' + string(object.spec.dnsNames.indexOf(n)) + ']'", "n", rule
        )
        + ") : []) + (has(object.spec.commonName) && !(has(object.spec.dnsNames) && "
        "object.spec.commonName in object.spec.dnsNames) && "
        + _dns_refused("object.spec.commonName", dns_pattern)
        + " ? ["
        + _dns_message("'spec.commonName'", "object.spec.commonName", rule)
        + "] : [])",
        "uriViolations": "has(object.spec.uris) ? object.spec.uris.filter(u, "
        f"!u.startsWith('{spiffe_prefix}' + request.namespace + '/') && "
        "!variables.applicable.exists(g, has(g.uris) && g.uris.exists(p, "
        "p.startsWith('spiffe://') && "
        f"u.substring(9).split('/')[0].matches('^' + {host}.replace('.', r'\\.')"
        ".replace('*', '[^.]*') + '$') && "
        "u.substring(9 + size(u.substring(9).split('/')[0])).matches("
        + spiffe_path.format(path)
        + ")))).map(u, 'spec.uris[' + string(object.spec.uris.indexOf(u)) + \"]: '\" + u + "
        f"{not_allowed} + {rule} + ')') : []",
        "emailViolations": "has(object.spec.emailAddresses) ? "
        "object.spec.emailAddresses.filter(e, !variables.applicable.exists(g, "
        "has(g.emailAddresses) && g.emailAddresses.exists(p, "
        f"e.lowerAscii().matches({email_pattern})))).map(e, 'spec.emailAddresses[' + "
        'string(object.spec.emailAddresses.indexOf(e)) + "]: \'" + e + '
        f"{not_allowed} + 'email addresses need a grant)') : []",
        "ipViolations": "has(object.spec.ipAddresses) ? object.spec.ipAddresses.filter(a, "
        "!variables.applicable.exists(g, has(g.ipRanges) && g.ipRanges.exists(r, "
        "isCIDR(r) ? cidr(r).containsIP(a) : ip(r) == ip(a)))).map(a, 'spec.ipAddresses[' + "
        'string(object.spec.ipAddresses.indexOf(a)) + "]: \'" + string(ip(a)) + '
        f"{not_allowed} + 'IP addresses need a grant)') : []",
        "violations": "variables.dnsViolations + variables.uriViolations + "
        "variables.emailViolations + variables.ipViolations",
    }
    return [{"name": name, "expression": expression} for name, expression in variables.items()]


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "certsmith"}


def policy(*, operator_namespace: str, trust_domain: str) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) judging the names of
    Certificates `judged_in_cel` against their namespace and authority's grants, with
    isolation.evaluate's messages joined by "; " (HTTP 403, as the webhook answered)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": _labels()},
        "spec": {
            # An error (a budget exceeded) refuses: admitting would let the operator refuse later.
            "failurePolicy": "Fail",
            "paramKind": {
                "apiVersion": f"{names.GROUP}/{names.VERSION}",
                "kind": "CertificateAuthority",
            },
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [names.GROUP],
                        "apiVersions": [names.VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [names.CERTIFICATES],
                    }
                ]
            },
            "matchConditions": [
                {"name": "spec-changed", "expression": SPEC_CHANGED},
                {"name": "judged-in-cel", "expression": judged_in_cel(operator_namespace)},
            ],
            "variables": _variables(trust_domain),
            "validations": [
                {
                    "expression": "!variables.mine || size(variables.violations) == 0",
                    "messageExpression": "variables.violations.join('; ')",
                    "reason": "Forbidden",
                }
            ],
        },
    }


def binding() -> dict[str, Any]:
    """The binding that evaluates `policy` against every CertificateAuthority (each
    evaluation judges only for the Certificate's own authority), admitting when none
    exists: the operator judges again once it does, before signing."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": _labels()},
        "spec": {
            "policyName": POLICY_NAME,
            "validationActions": ["Deny"],
            "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
        },
    }
