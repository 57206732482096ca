"""The registry of loaded authorities tells who waits on one the moment it can sign."""

from __future__ import annotations

from certsmith.authorities import store
from certsmith.pki import ca

from .certificate_builders import AUTHORITY, signer


def test_listeners_hear_an_authority_once_each_time_it_becomes_able_to_sign(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    registry = store.AuthorityRegistry()
    heard: list[str] = []
    registry.on_loaded(heard.append)
    material = signer(root, intermediate)

    registry.put(material)
    registry.put(material)  # a later step of a loaded authority: nobody waits on it
    assert heard == [AUTHORITY]

    registry.remove(AUTHORITY, "spec.rootLifetime: too short")
    assert registry.get(AUTHORITY) is None
    registry.put(material)  # loaded again after a problem
    assert heard == [AUTHORITY, AUTHORITY]
    assert registry.problem(AUTHORITY) is None


def test_a_listener_may_read_the_registry_it_is_called_from(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    """Listeners run outside the registry's lock (a waiting request reads it again)."""
    registry = store.AuthorityRegistry()
    seen: list[bool] = []
    registry.on_loaded(lambda name: seen.append(registry.get(name) is not None))
    registry.put(signer(root, intermediate))
    assert seen == [True]
