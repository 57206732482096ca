"""certsmith: a Kubernetes operator that issues and rotates certificates from a cluster-local CA."""
