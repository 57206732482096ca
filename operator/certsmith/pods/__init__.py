"""How pods get and follow certificates: the injected pod spec and identity Certificates
(`injection`), rolling restarts after a rotation (`rollout`). Pure."""
