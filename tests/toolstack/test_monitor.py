"""Runstate samples, interval shares and the Prometheus exposition (xenpy.toolstack.monitor).

Without a CPU engine a running vCPU just consumes virtual time, so the figures are exact: a sample's runstate
times are ``vcpu_runstate_get``'s (spec 2.3), and between two samples each vCPU's four shares cover the
interval.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenpy.abi.generated.hypercalls import Hypercall, SchedOp, VcpuOp
from xenpy.hypervisor import DomainConfig, Hypervisor
from xenpy.toolstack.monitor import (
    PROMETHEUS_METRICS,
    STATE_NAMES,
    Sample,
    prometheus_text,
    rounded_shares,
    shares,
    take_sample,
)

MS = 1_000_000


def busy_domain(nr_pcpus: int, nr_vcpus: int) -> tuple[Hypervisor, object]:
    hv = Hypervisor(nr_pcpus=nr_pcpus, memory_mib=32)
    dom = hv.create_domain(DomainConfig(max_vcpus=nr_vcpus, memory_mib=2, periodic_period_ns=0, name="busy"))
    dom.unpause()
    hv.bring_up_vcpus(dom)
    return hv, dom


def test_sample_is_the_runstate_of_every_vcpu() -> None:
    """Spec 2.3: a sample's times are VCPUOP_get_runstate_info's, summing to the vCPU's age."""
    hv, dom = busy_domain(1, 2)
    hv.run_for(20 * MS)
    sample = take_sample(hv)
    assert sample.time_ns == hv.now_ns()
    (d,) = sample.domains
    assert (d.domid, d.name, d.state, d.memory_kib) == (dom.domid, "busy", "running", 2048)
    for v, vs in zip(dom.vcpus, d.vcpus, strict=True):
        state, entry, *times = hv.runstate(v)
        assert (vs.state, vs.state_entry_ns, list(vs.times_ns)) == (state, entry, times)
        assert sum(vs.times_ns) == sample.time_ns - v.creation_ns
        assert vs.online
    # Two busy vCPUs on one pCPU: each ran about half the time and waited the rest.
    assert all(vs.times_ns[0] > 5 * MS and vs.times_ns[1] > 5 * MS for vs in d.vcpus)
    # vCPU 0 made the bring-up hypercalls.
    assert d.vcpus[0].hypercalls == 2 and d.vcpus[1].hypercalls == 0


def test_shares_of_two_busy_vcpus_on_one_pcpu() -> None:
    """Spec 2: running + runnable cover the interval; each gets half of it, the other half stolen."""
    hv, _dom = busy_domain(1, 2)
    hv.run_for(5 * MS)
    before = take_sample(hv)
    hv.run_for(100 * MS)
    after = take_sample(hv)
    rows = shares(before, after)
    assert [(r.vcpu, r.interval_ns) for r in rows] == [(0, 100 * MS), (1, 100 * MS)]
    for r in rows:
        assert sum(r.percent) == pytest.approx(100.0)
        assert r.percent[2:] == (0.0, 0.0)
        assert 40 <= r.percent[0] <= 60 and r.steal == pytest.approx(r.percent[1], abs=0.1)


def test_blocked_and_offline_shares() -> None:
    hv, dom = busy_domain(2, 3)
    v1, v2 = dom.vcpus[1], dom.vcpus[2]
    assert hv.hypercall(v1, Hypercall.sched_op, SchedOp.SCHEDOP_block) == 0  # no timer: blocked for good
    assert hv.hypercall(v2, Hypercall.vcpu_op, VcpuOp.VCPUOP_down, 2, 0) == 0  # of itself
    hv.run_for(MS)
    before = take_sample(hv)
    hv.run_for(10 * MS)
    rows = {r.vcpu: r for r in shares(before, take_sample(hv))}
    assert rows[0].percent == (100.0, 0.0, 0.0, 0.0) and rows[0].steal == 0.0
    assert rows[1].percent == (0.0, 0.0, 100.0, 0.0) and rows[1].steal is None
    assert rows[2].percent == (0.0, 0.0, 0.0, 100.0) and not rows[2].online


def test_no_time_passed_gives_zero_shares() -> None:
    hv, _dom = busy_domain(1, 1)
    sample = take_sample(hv)
    (row,) = shares(sample, sample)
    assert row.percent == (0.0, 0.0, 0.0, 0.0) and row.hypercalls_per_s == 0.0


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=4, max_size=4))
def test_rounded_shares_sum_to_exactly_100(parts: list[int]) -> None:
    """The four shares, rounded to 0.1, sum to 100.0 and each is within 0.1 of the exact figure."""
    total = sum(parts)
    got = rounded_shares(parts, total)
    if total == 0:
        assert got == (0.0, 0.0, 0.0, 0.0)
        return
    assert round(sum(got) * 10) == 1000
    for share, part in zip(got, parts, strict=True):
        assert abs(share - 100 * part / total) < 0.1 + 1e-9
        assert round(share * 10) == share * 10


def test_sample_json_round_trip() -> None:
    hv, _dom = busy_domain(1, 2)
    hv.run_for(3 * MS)
    sample = take_sample(hv)
    data = json.loads(json.dumps(sample.to_json()))
    assert Sample.from_json(data) == sample
    assert set(data["domains"][0]["vcpus"][0]) >= {f"{name}_ns" for name in STATE_NAMES}
    with pytest.raises(ValueError, match="not a runstate sample"):
        Sample.from_json({"time_ns": 1, "wall": 0, "domains": [{"domid": 1}]})
    del data["domains"][0]["vcpus"][0]["state"]
    with pytest.raises(ValueError):
        Sample.from_json(data)


def test_prometheus_text_parses_with_the_client_library() -> None:
    """The exposition is what prometheus_client's own parser reads, with every value of the sample."""
    parser = pytest.importorskip("prometheus_client.parser")
    hv, dom = busy_domain(1, 2)
    dom.name = 'odd "name"\\x'
    hv.run_for(7 * MS)
    sample = take_sample(hv)
    families = {f.name: f for f in parser.text_string_to_metric_families(prometheus_text(sample))}
    # The parser names a counter family without its _total suffix.
    assert set(families) == {name.removesuffix("_total") for name, _kind, _help in PROMETHEUS_METRICS}
    runstate = families["xen_vcpu_runstate_seconds"]
    assert runstate.type == "counter"
    got = {(s.labels["vcpu"], s.labels["state"]): s.value for s in runstate.samples}
    assert {s.labels["domain"] for s in runstate.samples} == {dom.name}
    for vs in sample.domains[0].vcpus:
        for name, t in zip(STATE_NAMES, vs.times_ns, strict=True):
            assert got[(str(vs.vcpu), name)] == pytest.approx(t / 1e9, abs=1e-9)
    state = {(s.labels["vcpu"], s.labels["state"]): s.value for s in families["xen_vcpu_state"].samples}
    assert sum(state.values()) == 2  # one state per vCPU
    assert families["xen_system_time_seconds"].samples[0].value == pytest.approx(sample.time_ns / 1e9)
