"""CertificateAuthorities: each one's root and intermediate, root rotation, trust bundles.

Pure: one authority's material and decisions (`authority`), the rotation state machine
(`rotation`), trust-bundle ConfigMaps (`trust_bundle`). I/O: the store of CA Secrets
(`store`, read by every replica for the webhook's certificate) and the `controller` that
drives each authority (only in the Lease holder).
"""
