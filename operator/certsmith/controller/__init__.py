"""The controller: runs only in the replica holding the Lease.

kopf watch handlers for Certificates, CertificateAuthorities, their Secrets, trust bundles
and namespaces (`handlers`), and what they dispatch to: when each Certificate is looked at
(`certificate_queue`), when each authority steps (`authority_steps`), trust bundle repair
(`bundle_repair`), namespace events (`namespace_events`) with the leader's cache of namespace labels
(`namespace_labels`), the scheduler's action (`dispatch`), and the PodCertificateRequest
signer (`pod_certificates`).
"""
