"""`kubectl certsmith`: a kubectl plugin to see and act on certsmith's objects.

Installed with the package as the `kubectl-certsmith` console script, which kubectl
finds on PATH. It talks to the apiserver only; every change goes through the operator
(annotations it honours), never around it.
"""
