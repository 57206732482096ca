"""Command line of `kubectl certsmith` (the `kubectl-certsmith` console script).

Connection flags work before or after the command, as with kubectl: both
`kubectl certsmith -n shop status` and `kubectl certsmith status -n shop` do the same.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from certsmith.api import model
from certsmith.cli import api, ca, decide, inspection, output, renew, status

EXAMPLES = """\
examples:
  kubectl certsmith status -A                 # what is not Ready, what expires soonest
  kubectl certsmith inspect web -n shop       # chain, SANs, fingerprints, who mounts it
  kubectl certsmith renew web -n shop --wait  # re-issue now through the operator
  kubectl certsmith renew --all -n shop       # every Certificate in the namespace
  kubectl certsmith ca status                 # roots, intermediates, rotation phase
  kubectl certsmith ca rotate                 # ask the operator to rotate cluster-root
  kubectl certsmith approve gw-1 -n partners  # approve a CertificateRequest (verb approve
  kubectl certsmith deny gw-2 -n partners --message "unknown device"   # on its authority)

exit codes: 0 all is well, 1 something is not Ready, not found or failed, 2 bad usage.
"""


def _timeout(text: str) -> timedelta:
    """--timeout: a Go duration ("90s", "2m") or plain seconds."""
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    try:
        return model.parse_duration(text, "--timeout")
    except model.InvalidSpec as error:
        raise argparse.ArgumentTypeError(error.message) from None


def _reason(text: str) -> str:
    """--reason: a condition reason (decide.check_reason)."""
    try:
        return decide.check_reason(text)
    except api.CliError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _connection_flags(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # On the commands, flags default to SUPPRESS so that a value given before the command
    # is not overwritten by the command's own default.
    default = None if top_level else argparse.SUPPRESS
    group = parser.add_argument_group("connection")
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (else $KUBECONFIG)")
    group.add_argument("--context", default=default, help="kubeconfig context to use")
    group.add_argument(
        "-n", "--namespace", default=default, help="namespace (else the context's, or default)"
    )


def _all_namespaces_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="look at every namespace"
    )


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format"
    )


def build_parser() -> argparse.ArgumentParser:
    """The plugin's commands and flags; argparse exits 2 on bad usage."""
    parser = argparse.ArgumentParser(
        prog="kubectl certsmith",
        description="See and act on certsmith Certificates, CertificateRequests and "
        "CertificateAuthorities.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_flags(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status_parser = commands.add_parser(
        "status",
        help="Certificates not Ready, and those expiring soonest (exit 1 if any is not Ready)",
    )
    _connection_flags(status_parser, top_level=False)
    _all_namespaces_flag(status_parser)
    _output_flag(status_parser)
    status_parser.add_argument(
        "--limit", type=int, default=10, help="expiring Certificates to list (0: all; default 10)"
    )

    inspect_parser = commands.add_parser(
        "inspect",
        help="decode a Certificate's Secret: chain, SANs, key, fingerprints, roots, mounting pods",
    )
    _connection_flags(inspect_parser, top_level=False)
    _output_flag(inspect_parser)
    inspect_parser.add_argument("certificate", help="name of the Certificate")

    renew_parser = commands.add_parser(
        "renew",
        help="have the operator re-issue Certificates now (certsmith.dev/renew-requested-at)",
    )
    _connection_flags(renew_parser, top_level=False)
    _all_namespaces_flag(renew_parser)
    renew_parser.add_argument("certificates", nargs="*", metavar="certificate")
    renew_parser.add_argument(
        "--all", action="store_true", dest="every", help="every Certificate in the namespace"
    )
    renew_parser.add_argument(
        "--wait", action="store_true", help="wait until each has a new serial and is Ready"
    )
    renew_parser.add_argument(
        "--timeout",
        type=_timeout,
        default=timedelta(seconds=60),
        help="how long --wait waits, e.g. 90s or 5m (default 60s)",
    )

    for verb, what in (("approve", "approve"), ("deny", "deny (final)")):
        decide_parser = commands.add_parser(
            verb,
            help=f"{what} a CertificateRequest waiting for approval (needs the verb approve "
            "on its CertificateAuthority)",
        )
        _connection_flags(decide_parser, top_level=False)
        decide_parser.add_argument("request", help="name of the CertificateRequest")
        decide_parser.add_argument(
            "--reason",
            type=_reason,
            default=decide.DEFAULT_REASON,
            help=f"the condition's reason, one CamelCase word (default {decide.DEFAULT_REASON})",
        )
        decide_parser.add_argument("--message", help="the condition's message, for people")

    ca_parser = commands.add_parser("ca", help="CertificateAuthorities: status, rotate")
    _connection_flags(ca_parser, top_level=False)
    ca_commands = ca_parser.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    ca_status = ca_commands.add_parser(
        "status", help="roots, intermediates and rotation phase (exit 1 if any not Ready)"
    )
    _connection_flags(ca_status, top_level=False)
    _output_flag(ca_status)
    ca_rotate = ca_commands.add_parser(
        "rotate", help="ask the operator to rotate a root (certsmith.dev/rotate-requested-at)"
    )
    _connection_flags(ca_rotate, top_level=False)
    ca_rotate.add_argument(
        "authority", nargs="?", default=ca.DEFAULT_AUTHORITY, help="default: cluster-root"
    )
    return parser


def _namespace(args: argparse.Namespace, client: api.Api) -> str | None:
    """The namespace to act in; None for -A."""
    if getattr(args, "all_namespaces", False):
        if args.namespace:
            raise api.CliError("-n/--namespace and -A/--all-namespaces cannot be used together")
        return None
    return args.namespace or client.default_namespace


def run(args: argparse.Namespace) -> int:
    """Run the command `args` name; its exit code. CliError for what to tell the user."""
    if args.command == "renew":
        renew.check_arguments(args.certificates, args.every)
        if args.all_namespaces and not args.every:
            raise api.CliError("-A/--all-namespaces goes with --all")
    api_client, default_namespace = api.connect(kubeconfig=args.kubeconfig, context=args.context)
    client = api.Api(api_client, default_namespace)
    now = datetime.now(UTC)
    json_output = getattr(args, "output", "table") == "json"

    if args.command == "status":
        return status.run(
            client,
            namespace=_namespace(args, client),
            json_output=json_output,
            color=output.use_color(sys.stdout),
            limit=args.limit,
            now=now,
        )
    if args.command == "inspect":  # one Certificate: it has no -A
        namespace = args.namespace or client.default_namespace
        return inspection.run(
            client, namespace=namespace, name=args.certificate, json_output=json_output, now=now
        )
    if args.command == "renew":
        return renew.run(
            client,
            namespace=_namespace(args, client),
            certificates=args.certificates,
            every=args.every,
            wait=args.wait,
            timeout=args.timeout,
            clock=lambda: datetime.now(UTC),
        )
    if args.command in ("approve", "deny"):
        return decide.run(
            client,
            namespace=args.namespace or client.default_namespace,
            name=args.request,
            approve=args.command == "approve",
            reason=args.reason,
            message=args.message,
            now=now,
        )
    if args.ca_command == "status":
        return ca.run_status(client, json_output=json_output, color=output.use_color(sys.stdout))
    return ca.run_rotate(client, name=args.authority, now=now)


def main(argv: Sequence[str] | None = None) -> int:
    """The `kubectl-certsmith` entry point: 0 all is well, 1 not Ready / not found / failed
    (one line on stderr), 2 bad usage, 130 interrupted."""
    for stream in (sys.stdout, sys.stderr):
        # A terminal that cannot show "→" or a non-ASCII subject gets "?" instead of a crash.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except api.CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `kubectl certsmith status | head`: the reader left; stop quietly, as kubectl does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
