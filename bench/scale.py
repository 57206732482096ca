"""Scale benchmark: the curve of N Certificates applied at once, and what 10,000 cost later.

For each N of --counts (default 1000,5000,10000), on a fresh apiserver profile and a fresh
operator: the time until all are Ready, certificates per second, p50/p99/max apply→Ready,
apiserver writes per certificate, operator CPU seconds per certificate (and the apiserver's
and etcd's, from /proc), the operator's peak RSS. Then, for the last N, when asked:

  --idle SECONDS  the operator's CPU over SECONDS with every Certificate Ready.
  --churn         the namespace deleted and N Certificates applied again in a new one: the
                  operator's RSS after each burst (it must not grow with churn).
  --rotation RATE a root rotation at spec.rotation.reissueRate RATE: each phase's start, the
                  re-issue rate kept, the apiserver's 429 answers meanwhile.
  --restart       the operator stopped and started again: Certificates re-issued (must be
                  0), seconds until every renewal is scheduled again, and the API requests
                  it made meanwhile, by verb and resource (the apiserver's
                  apiserver_request_total; a WATCH counts when it ends, so open ones are
                  not in it).
  --restart-only  no burst: the Certificates already in the cluster of CERTSMITH_KUBECONFIG
                  (left by an earlier run there) are counted, the operator started and
                  restarted once; only the restart is measured (a short run to repeat).

    .venv/bin/python bench/scale.py [--counts 1000,5000,10000] [--idle 60] [--churn] [--restart]

Uses the cluster in CERTSMITH_KUBECONFIG, or brings the apiserver profile up (and down).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

import harness
from issuance import certificate

CERTIFICATES = harness.CERTSMITH_CERTIFICATES
GROUP, VERSION = CERTIFICATES.group, CERTIFICATES.version

_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Burst:
    namespace: str
    measured: harness.Burst


def requests_so_far(api: client.ApiClient) -> collections.Counter[tuple[str, str, str]]:
    """Every request the apiserver has served, by (verb, resource, code), from its own
    apiserver_request_total (all verbs, reads included)."""
    text = api.call_api("GET", api.configuration.host + "/metrics", header_params={})
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for line in text.read().decode().splitlines():
        match = _REQUEST.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("code", ""))
        counts[key] += int(float(match["value"]))
    return counts


def rss_mib(pid: int) -> float:
    """The resident set of process `pid` now (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def burst(running: harness.Running, count: int, profile: Path | None = None) -> Burst:
    """`count` Certificates applied at once (harness.run_burst) to a new namespace, until
    all Ready and writes settled; with `profile`, the operator sampled by py-spy meanwhile
    (collapsed stacks, per thread)."""
    namespace = harness.new_namespace(running.api)
    watcher = harness.ReadyWatcher(running.api, namespace, CERTIFICATES)
    bodies = [certificate(f"c{i:05d}", namespace) for i in range(count)]
    pids = {"operator": running.operator_pid, **harness.cluster_pids()}
    sampler = None if profile is None else py_spy(running.operator_pid, profile)
    try:
        measured = harness.run_burst(running.api, watcher, namespace, CERTIFICATES, bodies, pids)
    finally:
        watcher.stop()
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait()
    return Burst(namespace=namespace, measured=measured)


def py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy (from this Python's environment) recording `pid` into `output` until SIGINT."""
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)]
    command += ["--rate", "50", "--nonblocking", "--threads", "--format", "raw"]
    return subprocess.Popen([*command, "--output", str(output)], stdout=subprocess.DEVNULL)


def print_burst(result: Burst, count: int, operator_pid: int) -> None:
    measured = result.measured
    latencies = measured.latencies_ms
    per_cert_ms = {name: 1000 * measured.per_object(s) for name, s in measured.cpu_seconds.items()}
    print(f"--- {count} Certificates")
    print(f"all Ready after:         {measured.all_ready_seconds:.2f} s")
    print(f"throughput:              {count / measured.all_ready_seconds:.1f} certificates/s")
    print(
        f"apply→Ready p50/p99/max: {statistics.median(latencies):.0f} / "
        f"{harness.percentile_ms(latencies, 0.99):.0f} / {max(latencies):.0f} ms"
    )
    print(f"apiserver writes/cert:   {measured.per_object(measured.writes):.2f}")
    print(
        "CPU ms/cert:             "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(per_cert_ms.items()))
    )
    print(f"operator peak RSS:       {harness.peak_rss_mib(operator_pid):.0f} MiB")


def idle(running: harness.Running, seconds: float) -> None:
    time.sleep(5)  # the burst's last status echoes
    before = harness.cpu_seconds(running.operator_pid)
    time.sleep(seconds)
    used = harness.cpu_seconds(running.operator_pid) - before
    share = 100 * used / seconds
    print(f"idle operator CPU:       {used:.2f} s over {seconds:.0f} s ({share:.2f} %)")


def churn(running: harness.Running, first: Burst, count: int) -> None:
    """Delete the first burst's namespace, wait until it is gone, apply `count` again."""
    time.sleep(5)
    after_first = rss_mib(running.operator_pid)
    core = client.CoreV1Api(running.api)
    core.delete_namespace(first.namespace)
    deadline = time.monotonic() + max(300, count / 20)
    while time.monotonic() < deadline:
        try:
            core.read_namespace(first.namespace)
        except client.ApiException as error:
            if error.status == 404:
                break
            raise
        time.sleep(1)
    else:
        raise SystemExit(f"namespace {first.namespace} not gone after deletion")
    after_delete = rss_mib(running.operator_pid)
    second = burst(running, count)
    print_burst(second, count, running.operator_pid)
    time.sleep(5)
    after_second = rss_mib(running.operator_pid)
    print(
        f"operator RSS:            {after_first:.0f} MiB after the first burst, "
        f"{after_delete:.0f} after deleting it, {after_second:.0f} after the second "
        f"({100 * (after_second / after_first - 1):+.1f} %)"
    )


def rotation(running: harness.Running, count: int, rate: int) -> None:
    """Rotate cluster-root's root with spec.rotation.reissueRate `rate` (propagation delay
    1 s): how long each phase took, the re-issue rate kept, and 429s from the apiserver."""
    objects = client.CustomObjectsApi(running.api)
    before = requests_so_far(running.api)
    cpu_before = harness.cpu_seconds(running.operator_pid)
    objects.patch_cluster_custom_object(
        GROUP,
        VERSION,
        "certificateauthorities",
        "cluster-root",
        {
            "metadata": {"annotations": {"certsmith.dev/rotate-requested-at": _now_rfc3339()}},
            "spec": {"rotation": {"reissueRate": rate, "propagationDelay": "1s"}},
        },
    )
    started = time.monotonic()
    phases: list[tuple[str, float]] = []
    seen = None
    deadline = started + max(600, 4 * count / rate)
    while time.monotonic() < deadline:
        body = objects.get_cluster_custom_object(
            GROUP, VERSION, "certificateauthorities", "cluster-root"
        )
        phase = (body.get("status") or {}).get("phase")
        if phase != seen:
            phases.append((str(phase), time.monotonic() - started))
            seen = phase
        if phase == "Ready" and len(phases) > 1:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"rotation not finished after {deadline - started:.0f} s: {phases}")
    elapsed = time.monotonic() - started
    made = requests_so_far(running.api) - before
    throttled = sum(n for (_, _, code), n in made.items() if code == "429")
    began = dict(phases)
    reissuing = began.get("Retiring", elapsed) - began.get("Reissuing", 0.0)
    cpu = harness.cpu_seconds(running.operator_pid) - cpu_before
    print(f"--- root rotation over {count} leaves at reissueRate {rate}")
    print("phases began after:      " + ", ".join(f"{p} {t:.1f} s" for p, t in phases))
    print(f"all done after:          {elapsed:.1f} s (operator CPU {cpu:.1f} s)")
    print(f"re-issue rate:           {count / reissuing:.1f} /s over the Reissuing phase")
    print(f"apiserver 429 answers:   {throttled}")


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def operator_metric(port: int, name: str) -> float:
    """The sum of a metric's samples on the operator's /metrics. Only that metric is asked
    for (prometheus_client's `name[]` filter): a whole scrape, 30,000 series at 10,000
    Certificates, costs the operator ~0.1 s of CPU, and polled during a restart it took a
    fifth of the CPU the start-up had."""
    query = urllib.parse.urlencode({"name[]": name})
    url = f"http://127.0.0.1:{port}/metrics?{query}"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def restart(running: harness.Running, count: int, profile: Path | None = None) -> None:
    """Stop the operator, start it again with the same command and environment; report
    re-issues, the schedule's rebuild time and the API requests of the start-up."""
    pid = running.operator_pid
    environ = dict(
        entry.split("=", 1)
        for entry in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if "=" in entry
    )
    command = Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    metrics_port = int(environ["CERTSMITH_METRICS_PORT"])
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        time.sleep(0.1)
    time.sleep(2)  # the old operator's watches end and are counted before the baseline
    before = requests_so_far(running.api)
    log_path = Path(f"/tmp/certsmith-scale-restart-{metrics_port}.log")
    with log_path.open("w") as log:
        started = time.monotonic()
        second = subprocess.Popen(command, env=environ, stdout=log, stderr=subprocess.STDOUT)
    sampler = None if profile is None else py_spy(second.pid, profile)
    try:
        rebuilt = None
        at_rebuild = before
        deadline = started + 120
        while time.monotonic() < deadline:
            try:
                if operator_metric(metrics_port, "certsmith_scheduled_actions") >= count:
                    rebuilt = time.monotonic() - started
                    at_rebuild = requests_so_far(running.api)
                    break
            except OSError:
                pass  # not serving yet
            time.sleep(0.2)
        time.sleep(5)  # what the start-up still does after the schedule is whole
        after = requests_so_far(running.api)
        reissued = operator_metric(metrics_port, "certsmith_issuances_total")
        cpu, peak = harness.cpu_seconds(second.pid), harness.peak_rss_mib(second.pid)
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait()
    finally:
        second.terminate()
        second.wait()
    print_restart(
        count, log_path, rebuilt, reissued, cpu, peak, at_rebuild - before, after - before
    )


def print_restart(
    count: int,
    log_path: Path,
    rebuilt: float | None,
    reissued: float,
    cpu: float,
    peak_rss: float,
    until_rebuilt: collections.Counter[tuple[str, str, str]],
    made: collections.Counter[tuple[str, str, str]],
) -> None:
    print(f"--- restart with {count} Certificates (log {log_path})")
    print(
        "schedule rebuilt after:  "
        + ("not within 120 s" if rebuilt is None else f"{rebuilt:.2f} s")
    )
    print(f"re-issued:               {reissued:.0f}")
    writes = sum(n for (verb, _, _), n in made.items() if verb in harness.WRITE_VERBS)
    print(f"writes:                  {writes} (Lease renewals included)")
    print(f"operator CPU:            {cpu:.2f} s until 5 s after the rebuild")
    print(f"operator peak RSS:       {peak_rss:.0f} MiB")
    print(
        f"API requests:            {sum(until_rebuilt.values())} until the rebuild, "
        f"{sum(made.values())} until 5 s later (the bench's own /metrics reads in them)"
    )
    by_verb: collections.Counter[tuple[str, str]] = collections.Counter()
    for (verb, resource, _), n in made.items():
        by_verb[(verb, resource or "-")] += n
    for (verb, resource), n in sorted(by_verb.items(), key=lambda item: -item[1]):
        print(f"  {verb:8} {resource:30} {n}")


def settle(api: client.ApiClient) -> None:
    """Until the apiserver sees no more writes than Lease renewals (what a rotation leaves
    to do after its last phase, ca.crt updates, ends first), at most 10 minutes."""
    deadline = time.monotonic() + 600
    before = harness.writes_so_far(api)
    while time.monotonic() < deadline:
        time.sleep(5)
        now = harness.writes_so_far(api)
        if now - before <= 5:
            return
        before = now


def restart_only(*, webhooks: bool, profile: Path | None) -> None:
    """Restart the operator over the Certificates the cluster already holds, once its first
    start has scheduled every one of them."""
    if "CERTSMITH_KUBECONFIG" not in os.environ:
        raise SystemExit("--restart-only measures a cluster kept up: set CERTSMITH_KUBECONFIG")
    with harness.running_operator(webhooks=webhooks, name="scale") as running:
        objects = client.CustomObjectsApi(running.api)
        count = len(
            objects.list_cluster_custom_object(GROUP, VERSION, CERTIFICATES.plural)["items"]
        )
        deadline = time.monotonic() + 300
        while operator_metric(harness.METRICS_PORT, "certsmith_scheduled_actions") < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"the first start did not schedule {count} Certificates")
            time.sleep(1)
        settle(running.api)
        restart(running, count, None if profile is None else Path(f"{profile}-restart.txt"))


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000,10000", help="comma-separated Ns")
    parser.add_argument("--idle", type=float, default=0, help="seconds of idle CPU to measure")
    parser.add_argument("--churn", action="store_true")
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--restart-only", action="store_true")
    parser.add_argument(
        "--rotation", type=int, default=0, help="rotate the root at this reissueRate (after)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the operator during each burst into PROFILE-<N>.txt (collapsed stacks)",
    )
    parser.add_argument(
        "--no-webhooks",
        action="store_true",
        help="run the operator without admission webhooks (isolates issuance from admission)",
    )
    args = parser.parse_args()
    if args.restart_only:
        restart_only(webhooks=not args.no_webhooks, profile=args.profile)
        return
    counts = [int(part) for part in args.counts.split(",")]
    for index, count in enumerate(counts):
        last = index == len(counts) - 1
        with harness.running_operator(webhooks=not args.no_webhooks, name="scale") as running:
            profile = None if args.profile is None else Path(f"{args.profile}-{count}.txt")
            result = burst(running, count, profile)
            print_burst(result, count, running.operator_pid)
            if not last:
                continue
            if args.idle:
                idle(running, args.idle)
            if args.churn:
                churn(running, result, count)
            if args.rotation:
                rotation(running, count, args.rotation)
            if args.restart:
                settle(running.api)
                restart(
                    running,
                    count,
                    None if args.profile is None else Path(f"{args.profile}-restart-{count}.txt"),
                )


if __name__ == "__main__":
    main()
