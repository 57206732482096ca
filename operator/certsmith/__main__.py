"""`python -m certsmith`: run the operator (settings come from the environment, see config.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket

import kopf

from certsmith import handlers, webhooks  # noqa: F401  (importing registers the handlers)


def main() -> None:
    parser = argparse.ArgumentParser(prog="certsmith", description=__doc__)
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kopf.configure(verbose=args.verbose)
    # An explicit identity: kopf's default asks the passwd database, which a container
    # running as an arbitrary numeric uid does not have.
    identity = f"certsmith@{socket.gethostname()}/{os.getpid()}"
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            liveness_endpoint=args.liveness,
            standalone=True,
            identity=identity,
        )
    )


if __name__ == "__main__":
    main()
