"""Trust bundle ConfigMaps repaired as soon as a namespace appears or a bundle is edited,
each by its rightful owner alone (trust_bundle.rightful_owner), and each authority's
ClusterTrustBundle as soon as someone else edits or deletes it; the authorities' own steps
write them too. Runs only in the Lease holder."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from certsmith.authorities import cluster_trust_bundle, trust_bundle
from certsmith.authorities.controller import AuthorityController
from certsmith.controller.authority_steps import AuthoritySteps
from certsmith.controller.namespace_labels import NamespaceLabels

logger = logging.getLogger(__name__)


class BundleRepair:
    def __init__(
        self,
        *,
        default_authority: str,
        controller: AuthorityController,
        steps: AuthoritySteps,
        namespaces: NamespaceLabels,
    ) -> None:
        self._default_authority = default_authority
        self._controller = controller
        self._steps = steps
        self._namespaces = namespaces

    def is_own_write(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether a bundle ConfigMap's watch event only echoes certsmith's own write."""
        return self._controller.is_own_bundle_write(namespace, name, resource_version)

    def forget_namespace(self, namespace: str) -> None:
        """The namespace was deleted: forget the bundle writes made there."""
        self._controller.forget_namespace(namespace)

    def changed(self, configmap: Mapping[str, Any]) -> None:
        """A bundle ConfigMap was edited or deleted by someone else: its rightful owner
        (whatever authority the ConfigMap's marks name) repairs it, and every authority that
        claims its name steps soon, so BundlesSynced says what is true now, not before the
        edit. ApiError when the apiserver does not answer."""
        metadata = configmap["metadata"]
        self.needed(metadata["namespace"], only=metadata["name"], step=True)

    def listed(self, namespace: str) -> None:
        """The namespaces' first list of a term shows `namespace`: its bundles are written
        by the authorities' steps, which list every namespace, unless it appeared after a
        step's list (then here). ApiError when the apiserver does not answer."""
        if self._controller.namespace_unseen(namespace):
            self.needed(namespace)

    def needed(self, namespace: str, *, only: str | None = None, step: bool = False) -> None:
        """Create or repair the bundles of a namespace (the one called `only`, else all), each
        by its rightful owner alone. An owner that cannot write has its authority step soon,
        which reports it in status; so do the other claimants (their BundleConflict) when
        `step`. The authorities are read now: the default one, or the oldest, must win even
        before the operator has loaded it, or a younger one would write first."""
        labels = self._namespaces.labels(namespace)
        found = self._controller.bundle_claims()
        for config_map in sorted({c.config_map for c in found if only in (None, c.config_map)}):
            contenders = trust_bundle.candidates(
                found, config_map=config_map, namespace_labels=labels
            )
            owner = trust_bundle.rightful_owner(
                contenders, default_authority=self._default_authority
            )
            if owner is None:
                continue  # not selected here by any authority: the ConfigMap is nobody's
            self._put(namespace, owner, config_map)
            for claim in contenders:
                if step or claim.authority != owner:
                    self._steps.step_soon(claim.authority)

    def _put(self, namespace: str, owner: str, config_map: str) -> None:
        """Create or repair one bundle (found by name: its label may be gone) by its rightful
        owner, if that authority is loaded with this bundle name (else its own step, due
        after any change of its spec, writes it)."""
        problem = self._controller.repair_bundle(owner, namespace, config_map)
        if problem is not None:
            logger.warning("trust bundle %s", problem)
            self._steps.step_soon(owner)

    def is_own_cluster_trust_bundle_write(self, name: str, resource_version: str) -> bool:
        """Whether a ClusterTrustBundle's watch event only echoes certsmith's own write."""
        return self._controller.is_own_cluster_trust_bundle_write(name, resource_version)

    def cluster_trust_bundle_changed(self, name: str) -> None:
        """ClusterTrustBundle `name` was created, edited or deleted by someone else: if it is
        an authority's (`cluster_trust_bundle.bundle_name`), that authority puts its own
        back and steps now, so ClusterTrustBundleSynced says what is true now (a conflict
        gone with a foreign bundle deleted or handed over, or a new one); one it cannot
        write has the authority step soon, which reports it in status. ApiError when the
        apiserver does not answer."""
        authority = cluster_trust_bundle.bundle_authority(name)
        if authority is None:
            return
        problem = self._controller.repair_cluster_trust_bundle(authority)
        if problem is not None:
            logger.warning("trust bundle %s", problem)
            self._steps.step_soon(authority)
        else:
            self._steps.step_now(authority)
