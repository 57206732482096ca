"""One Certificate → one kubernetes.io/tls Secret. Runs in the Lease holder (the controller).

Pure: the Secret's shape (`tls_secret`), when to renew (`renewal`), which names a namespace
may carry (`isolation`), the decision chain (`policies`), the status a Certificate shows
(`status`), what an issuance or repair writes (`issuance`), and what it needs of its
CertificateAuthority (`signer`: protocols the authorities above satisfy). I/O: `reconcile`
alone, gather → decide → apply.
"""
