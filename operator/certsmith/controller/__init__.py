"""The controller: runs only in the replica holding the Lease.

kopf watch handlers for Certificates, CertificateAuthorities, their Secrets, trust bundles
and namespaces.
"""
