"""Several replicas, one controller: the Lease (`lease`, pure), the campaign for it
(`leadership`), whether watches still deliver (`watch_health`, pure), what a replica knows
of itself (`state`) and `/readyz` (`readiness`). Runs in every replica."""
