"""A signer writes a root's bound only when it must grow, and on its parent's root Secret
for a subordinate: every write is a PATCH the apiserver and etcd pay for, once per signed
certificate otherwise."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from certsmith.controller.root_bounds import RootBounds
from certsmith.pki import ca
from tests.unit.certificate_builders import signer

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROOT = "ab" * 32


class Secrets:
    """The bound each (authority, root) Secret holds, as store.record_* keeps it: raised,
    never lowered; None for a root no Secret of certsmith's holds."""

    def __init__(self, supplied: frozenset[str] = frozenset()) -> None:
        self.bounds: dict[tuple[str, str], datetime] = {}
        self.writes: list[tuple[str, str, datetime]] = []
        self.supplied = supplied

    def record(self, owner: str, root: str, moment: datetime) -> datetime | None:
        if root in self.supplied:
            return None
        current = self.bounds.get((owner, root))
        if current is None or current < moment:
            self.writes.append((owner, root, moment))
            self.bounds[(owner, root)] = moment
        return self.bounds[(owner, root)]


@pytest.mark.parametrize(
    ("moments", "written"),
    [
        ([NOW], [NOW]),
        ([NOW, NOW], [NOW]),
        ([NOW, NOW - timedelta(hours=1)], [NOW]),
        ([NOW, NOW + timedelta(minutes=1)], [NOW, NOW + timedelta(minutes=1)]),
    ],
)
def test_a_bound_is_written_only_when_it_must_grow(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, moments, written
) -> None:
    secrets = Secrets()
    bounds = RootBounds(secrets.record)
    for moment in moments:
        bounds.cover(signer(root, intermediate), ROOT, moment)
    assert [moment for _, _, moment in secrets.writes] == written


def test_a_supplied_root_is_asked_once(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> None:
    asked: list[datetime] = []
    secrets = Secrets(supplied=frozenset({ROOT}))

    def record(owner: str, fingerprint: str, moment: datetime) -> datetime | None:
        asked.append(moment)
        return secrets.record(owner, fingerprint, moment)

    bounds = RootBounds(record)
    bounds.cover(signer(root, intermediate), ROOT, NOW)
    bounds.cover(signer(root, intermediate), ROOT, NOW + timedelta(days=1))
    assert asked == [NOW]


def test_a_subordinates_bound_goes_on_its_parents_root(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    secrets = Secrets()
    subordinate = replace(signer(root, intermediate), name="partner", parent="cluster-root")
    RootBounds(secrets.record).cover(subordinate, ROOT, NOW)
    assert secrets.writes == [("cluster-root", ROOT, NOW)]


def test_a_new_term_reads_the_secret_again(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> None:
    """Another replica (or an authority deleted and created again) may have changed the
    Secret meanwhile: what this replica knew is not trusted across terms."""
    secrets = Secrets()
    bounds = RootBounds(secrets.record)
    bounds.cover(signer(root, intermediate), ROOT, NOW)
    secrets.bounds.clear()  # the Secret made again without its bound
    bounds.cover(signer(root, intermediate), ROOT, NOW)
    assert len(secrets.writes) == 1
    bounds.forget()
    bounds.cover(signer(root, intermediate), ROOT, NOW)
    assert len(secrets.writes) == 2
