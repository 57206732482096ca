"""Kubernetes pod certificates (KEP-4317), pure: which APIs the cluster serves, and what
certsmith signs for a PodCertificateRequest. The I/O is in controller/ (Lease holder only)."""
