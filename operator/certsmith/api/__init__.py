"""certsmith's API as data: the spec model of Certificates, status conditions.

Pure (no I/O, no kopf, no Kubernetes client); imported by every other folder and the CLI.
"""
