"""`helm test certsmith`: a Certificate created in the test namespace becomes Ready and its
Secret holds a certificate. Runs in the operator image (Python, the Kubernetes client);
arguments: NAMESPACE TIMEOUT_SECONDS. Exit status 0 when Ready in time, else 1."""

import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

namespace, timeout = sys.argv[1], float(sys.argv[2])
name = "certsmith-helm-test"
config.load_incluster_config()
objects = client.CustomObjectsApi()
certificate = {
    "apiVersion": "certsmith.dev/v1alpha1",
    "kind": "Certificate",
    "metadata": {"name": name},
    # A name of the namespace's own zone: namespace isolation allows it without a grant.
    "spec": {"secretName": name, "dnsNames": [f"helm-test.{namespace}.svc"]},
}
try:
    objects.create_namespaced_custom_object(
        "certsmith.dev", "v1alpha1", namespace, "certificates", certificate
    )
except ApiException as error:
    if error.status != 409:
        raise
deadline = time.monotonic() + timeout
conditions = []
while time.monotonic() < deadline:
    body = objects.get_namespaced_custom_object(
        "certsmith.dev", "v1alpha1", namespace, "certificates", name
    )
    conditions = (body.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        secret = client.CoreV1Api().read_namespaced_secret(name, namespace)
        if (secret.data or {}).get("tls.crt"):
            print(f"Certificate {namespace}/{name} is Ready; Secret {name} holds tls.crt")
            sys.exit(0)
    time.sleep(2)
print(f"Certificate {namespace}/{name} not Ready after {timeout:.0f} s: {conditions}")
sys.exit(1)
