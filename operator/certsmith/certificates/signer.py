"""What issuing a Certificate needs of its CertificateAuthority, as seen from below it.

`certificates` sits under `authorities` in the layers (.importlinter): an authority's
loaded material (authorities.authority.AuthorityMaterial) and the root-rotation pacer
(authorities.rotation.ReissuePacer) satisfy these protocols structurally and are handed
to the reconciler by the wiring; nothing here imports them. Pure: protocols only (the
lookup by name, which may read the apiserver, is reconcile.Signers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from certsmith.certificates.isolation import Grant
from certsmith.certificates.policies import AuthorityView
from certsmith.pki import ca
from certsmith.pki.name_constraints import NameConstraints


class Signer(Protocol):
    """A loaded CertificateAuthority that can sign leaves now."""

    @property
    def name(self) -> str:
        """The CertificateAuthority's name (spec.issuerRef.name of its Certificates)."""
        ...

    @property
    def intermediate(self) -> ca.CAKeyPair:
        """The intermediate that signs leaves; it goes into tls.crt after the leaf."""
        ...

    @property
    def grants(self) -> Sequence[Grant]:
        """spec.policy.grants: the names namespaces may carry beyond their own."""
        ...

    @property
    def name_constraints(self) -> NameConstraints:
        """spec.nameConstraints: no leaf is signed for a name outside them."""
        ...

    @property
    def bundle_pem(self) -> bytes:
        """Every root currently trusted, PEM: the ca.crt of each Secret it issued into."""
        ...

    @property
    def crl_url(self) -> str | None:
        """spec.crl.distributionPointURL: the CRL distribution point of the leaves it signs."""
        ...

    @property
    def revoked(self) -> frozenset[int]:
        """The serials its CRLs list (a Certificate holding one is not Ready)."""
        ...

    @property
    def issuer_fingerprint(self) -> str:
        """The intermediate's SHA-256 fingerprint, recorded on the Secrets it issued into."""
        ...

    def view(self) -> AuthorityView:
        """What policies judge an existing leaf against (trusted roots, signing root)."""
        ...


class ReissuePacing(Protocol):
    """Spaces root-rotation re-issues per authority (authorities.rotation.ReissuePacer)."""

    def slot(self, authority: str, key: tuple[str, str], *, now: datetime) -> datetime:
        """When `key` (a Certificate's (namespace, name)) may re-issue: `now` means now,
        a later time means come back then (the slot stays reserved for it)."""
        ...
