"""Enrolment by CSR: a CertificateRequest's PKCS#10 request read and judged (csr), whether it
is approved and what is written into its status (decision). Pure; the controller's
certificate_requests signs with them, the admission webhook refuses bad requests with them."""
