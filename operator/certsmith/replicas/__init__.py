"""Several replicas, one controller: the Lease (`lease`, pure), the campaign for it
(`leadership`), whether watches still deliver (`watch_health`, pure) and `/readyz`
(`readiness`). Runs in every replica."""
