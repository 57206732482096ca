"""bench/compare.py's table: the figures per certificate, the ratios and their layout."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

# bench/ is a folder of scripts, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import compare
import harness


def result(
    *, seconds: float, latencies_ms: list[float], writes: int, events: int
) -> compare.Result:
    return compare.Result(
        burst=harness.Burst(
            count=4,
            all_created_seconds=seconds / 2,
            all_ready_seconds=seconds,
            latencies_ms=latencies_ms,
            writes=writes,
            event_writes=events,
            cpu_seconds={"operator": 0.4, "kube-apiserver": 0.2, "etcd": 0.04},
        ),
        peak_rss_mib=200.0,
    )


CERT_MANAGER = result(seconds=8.0, latencies_ms=[1000, 2000, 3000, 4000], writes=80, events=32)
CERTSMITH = compare.Result(
    burst=harness.Burst(
        count=4,
        all_created_seconds=0.8,
        all_ready_seconds=1.0,
        latencies_ms=[100, 200, 300, 400],
        writes=12,
        event_writes=0,
        cpu_seconds={"operator": 0.04, "kube-apiserver": 0.1, "etcd": 0.02},
    ),
    peak_rss_mib=100.0,
)


@pytest.mark.parametrize(
    ("label", "cert_manager", "certsmith", "ratio"),
    [
        ("all created", 4.0, 0.8, 5.0),
        ("all Ready", 8.0, 1.0, 8.0),
        # Nearest rank of 4 latencies: p50 is the 2nd, p99 and max the 4th.
        ("apply→Ready p50", 2.0, 0.2, 10.0),
        ("apply→Ready p99", 4.0, 0.4, 10.0),
        ("apply→Ready max", 4.0, 0.4, 10.0),
        ("apiserver writes / cert", 20.0, 3.0, 20 / 3),
        ("  of them Events", 8.0, 0.0, math.inf),
        ("controller peak RSS", 200.0, 100.0, 2.0),
        ("CPU / cert: controller", 100.0, 10.0, 10.0),
        ("CPU / cert: kube-apiserver", 50.0, 25.0, 2.0),
        ("CPU / cert: etcd", 10.0, 5.0, 2.0),
        ("CPU / cert: all three", 160.0, 40.0, 4.0),
    ],
)
def test_rows_are_per_certificate_with_cert_manager_over_certsmith(
    label: str, cert_manager: float, certsmith: float, ratio: float
) -> None:
    row = next(r for r in compare.rows(CERT_MANAGER, CERTSMITH) if r.label == label)
    assert (row.cert_manager, row.certsmith) == pytest.approx((cert_manager, certsmith))
    assert row.ratio() == pytest.approx(ratio)


def test_table_shows_throughput_beside_all_ready_and_the_ratio() -> None:
    table = compare.format_table(compare.rows(CERT_MANAGER, CERTSMITH), count=4).splitlines()
    assert table[0] == (
        "| N = 4 | cert-manager | certsmith (admission on) | cert-manager ÷ certsmith |"
    )
    assert table[3] == "| all Ready | 8.00 s (0.5/s) | 1.00 s (4.0/s) | 8.0x |"
    assert "| controller peak RSS | 200 MiB | 100 MiB | 2.0x |" in table
    assert "|   of them Events | 8.00 | 0.00 | ∞ |" in table
