"""One Certificate → one kubernetes.io/tls Secret.

Pure: the Secret's shape (`tls_secret`), when to renew (`renewal`), which names a namespace
may carry (`isolation`), the decision chain (`policies`). I/O: `reconcile` alone, run by the
controller in the Lease holder.
"""
