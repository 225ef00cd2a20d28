"""Runstate monitoring: samples of every domain and vCPU, the shares between two samples, and their exports.

A :class:`Sample` is what a monitor reads of the hypervisor at one instant: system time, host time, and per
vCPU its runstate (spec 2.3: state and the four accumulated times), where it runs and how many hypercalls it
made; per domain its lifecycle state and the events the hypervisor sent it. Samples are plain data: they go
over the control socket and into ``xenpy runstate record`` files as JSON (:meth:`Sample.to_json`,
:meth:`Sample.from_json`), and the same code turns any two of them into :class:`VcpuShares` rows
(:func:`shares`), which ``xenpy top`` prints.

The four shares of a vCPU are its running, runnable, blocked and offline time over the interval's system time,
in per cent, rounded to 0.1 so that they sum to exactly 100.0 (largest remainder). ``steal`` is the part of the
time the vCPU wanted a pCPU that it waited: runnable / (running + runnable), None when it wanted none. Rates
are per second of system time (the guest's time, which the virtual clock does not tie to the host's).

:func:`prometheus_text` renders a sample in Prometheus' text exposition format 0.0.4.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenpy.abi.vcpu import RUNSTATE

if TYPE_CHECKING:
    from xenpy.hypervisor import Hypervisor

#: The runstate names, by RUNSTATE_* value (spec 2.1): running, runnable, blocked, offline.
STATE_NAMES: tuple[str, ...] = tuple(state.name.removeprefix("RUNSTATE_") for state in RUNSTATE)


@dataclass(frozen=True)
class VcpuSample:
    """One vCPU at a sample's instant.

    Attributes:
        vcpu: the vCPU id.
        state: its RUNSTATE_* value.
        state_entry_ns: system time it entered ``state``.
        times_ns: ns accumulated in each runstate, by RUNSTATE_* value, up to the sample's time.
        pcpu: the pCPU it runs on or last ran on (``v->processor``).
        online: False while it is down (VPF_down), as ``xl vcpu-list`` tells.
        hypercalls: hypercalls it made so far.
    """

    vcpu: int
    state: int
    state_entry_ns: int
    times_ns: tuple[int, int, int, int]
    pcpu: int
    online: bool
    hypercalls: int

    @property
    def state_name(self) -> str:
        """``running``, ``runnable``, ``blocked`` or ``offline``."""
        return STATE_NAMES[self.state]


@dataclass(frozen=True)
class DomainSample:
    """One domain at a sample's instant.

    Attributes:
        domid / name: the domain's id and name.
        state: its lifecycle state (:class:`~xenpy.core.domain.DomainState` value: running, paused, ...).
        memory_kib: its memory now (``tot_pages``: what ``xl list`` shows).
        events: event-channel notifications the hypervisor set pending for it so far.
        vcpus: its vCPUs, by id.
        max_memory_kib: the most it may have (``max_pages``).
        ballooned_kib: memory it gave back (XENMEM_decrease_reservation) and may take again.
        claimed_kib: memory claimed for it and not yet allocated (XENMEM_claim_pages).
    """

    domid: int
    name: str
    state: str
    memory_kib: int
    events: int
    vcpus: tuple[VcpuSample, ...]
    max_memory_kib: int = 0
    ballooned_kib: int = 0
    claimed_kib: int = 0

    @property
    def hypercalls(self) -> int:
        """Hypercalls of all its vCPUs."""
        return sum(v.hypercalls for v in self.vcpus)


@dataclass(frozen=True)
class Sample:
    """Every domain at one instant.

    Attributes:
        time_ns: system time (``NOW()``).
        wall: host time, seconds since the epoch.
        domains: every domain, by domid.
    """

    time_ns: int
    wall: float
    domains: tuple[DomainSample, ...]

    def to_json(self) -> dict[str, Any]:
        """The sample as JSON-ready data (the form of the control socket and of record files)."""
        return {
            "time_ns": self.time_ns,
            "wall": self.wall,
            "domains": [
                {
                    "domid": d.domid, "name": d.name, "state": d.state, "memory_kib": d.memory_kib,
                    "max_memory_kib": d.max_memory_kib, "ballooned_kib": d.ballooned_kib,
                    "claimed_kib": d.claimed_kib, "events": d.events,
                    "vcpus": [
                        {"vcpu": v.vcpu, "state": v.state_name, "state_entry_ns": v.state_entry_ns,
                         **{f"{name}_ns": t for name, t in zip(STATE_NAMES, v.times_ns, strict=True)},
                         "pcpu": v.pcpu, "online": v.online, "hypercalls": v.hypercalls}
                        for v in d.vcpus
                    ],
                }
                for d in self.domains
            ],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        """The sample :meth:`to_json` gave.

        Raises:
            ValueError: ``data`` is not such a sample (a missing field, a wrong type, an unknown state).
        """
        try:
            return cls(
                time_ns=int(data["time_ns"]),
                wall=float(data["wall"]),
                domains=tuple(
                    DomainSample(
                        domid=int(d["domid"]), name=str(d["name"]), state=str(d["state"]),
                        memory_kib=int(d["memory_kib"]), events=int(d["events"]),
                        max_memory_kib=int(d.get("max_memory_kib", d["memory_kib"])),
                        ballooned_kib=int(d.get("ballooned_kib", 0)), claimed_kib=int(d.get("claimed_kib", 0)),
                        vcpus=tuple(
                            VcpuSample(
                                vcpu=int(v["vcpu"]), state=STATE_NAMES.index(v["state"]),
                                state_entry_ns=int(v["state_entry_ns"]),
                                times_ns=tuple(int(v[f"{name}_ns"]) for name in STATE_NAMES),  # type: ignore[arg-type]
                                pcpu=int(v["pcpu"]), online=bool(v["online"]), hypercalls=int(v["hypercalls"]),
                            )
                            for v in d["vcpus"]
                        ),
                    )
                    for d in data["domains"]
                ),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not a runstate sample: {error}") from None


def take_sample(hv: Hypervisor) -> Sample:
    """Read every domain and vCPU of ``hv`` now (``vcpu_runstate_get`` of each vCPU at one system time)."""
    now = hv.now_ns()
    context = hv.dispatcher.context
    domains = []
    for d in sorted(hv.domains.values(), key=lambda d: d.domid):
        vcpus = []
        for v in d.vcpus:
            state, entry, *times = hv.runstate(v)
            vcpus.append(VcpuSample(v.vcpu_id, state, entry, tuple(times), v.processor,  # type: ignore[arg-type]
                                    v.is_up, context(v).hypercalls))
        mem = d.memory_stats()
        domains.append(DomainSample(d.domid, d.name, d.state.value, mem.total_kib, d.events_sent, tuple(vcpus),
                                    max_memory_kib=mem.max_kib, ballooned_kib=mem.ballooned_kib,
                                    claimed_kib=mem.claimed_kib))
    return Sample(now, time.time(), tuple(domains))


@dataclass(frozen=True)
class VcpuShares:
    """What one vCPU did between two samples.

    Attributes:
        domid / name / vcpu: which vCPU.
        state / pcpu / online: at the later sample.
        interval_ns: system time between the samples.
        percent: running, runnable, blocked and offline share of ``interval_ns``, in per cent, summing to 100.0
            (all 0.0 when no system time passed).
        steal: runnable / (running + runnable) in per cent, None if neither grew.
        hypercalls_per_s: hypercalls per second of system time.
        events_per_s: the domain's events per second of system time (the same on each of its rows).
        times_ns: the four runstate times at the later sample.
    """

    domid: int
    name: str
    vcpu: int
    state: str
    pcpu: int
    online: bool
    interval_ns: int
    percent: tuple[float, float, float, float]
    steal: float | None
    hypercalls_per_s: float
    events_per_s: float
    times_ns: tuple[int, int, int, int]

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready data (``xenpy top -b --json``)."""
        return {
            "domid": self.domid, "name": self.name, "vcpu": self.vcpu, "state": self.state, "pcpu": self.pcpu,
            "online": self.online, "interval_ns": self.interval_ns,
            **{name: share for name, share in zip(STATE_NAMES, self.percent, strict=True)},
            "steal": self.steal, "hypercalls_per_s": self.hypercalls_per_s, "events_per_s": self.events_per_s,
            **{f"{name}_ns": t for name, t in zip(STATE_NAMES, self.times_ns, strict=True)},
        }  # fmt: skip


def rounded_shares(parts: tuple[int, ...] | list[int], total: int) -> tuple[float, ...]:
    """``parts`` as per cent of their sum, to 0.1, summing to exactly 100.0 (largest remainder); zeros if the
    sum is 0. ``total`` is the sum of ``parts``."""
    if total <= 0:
        return tuple(0.0 for _ in parts)
    tenths = [part * 1000 / total for part in parts]
    floors = [int(t) for t in tenths]
    missing = 1000 - sum(floors)
    order = sorted(range(len(parts)), key=lambda i: floors[i] - tenths[i])
    for i in order[:missing]:
        floors[i] += 1
    return tuple(f / 10 for f in floors)


def shares(before: Sample, after: Sample) -> list[VcpuShares]:
    """A row per vCPU of ``after`` for what it did since ``before`` (a domain or vCPU new since then counts
    from zero)."""
    interval = after.time_ns - before.time_ns
    seconds = interval / 1e9
    earlier = {(d.domid, v.vcpu): v for d in before.domains for v in d.vcpus}
    earlier_events = {d.domid: d.events for d in before.domains}
    rows = []
    for d in after.domains:
        events = d.events - earlier_events.get(d.domid, 0)
        for v in d.vcpus:
            prev = earlier.get((d.domid, v.vcpu))
            old_times = prev.times_ns if prev is not None else (0, 0, 0, 0)
            deltas = [max(0, t - o) for t, o in zip(v.times_ns, old_times, strict=True)]
            wanted = deltas[0] + deltas[1]
            calls = v.hypercalls - (prev.hypercalls if prev is not None else 0)
            rows.append(VcpuShares(
                domid=d.domid, name=d.name, vcpu=v.vcpu, state=v.state_name, pcpu=v.pcpu, online=v.online,
                interval_ns=interval,
                percent=rounded_shares(deltas, sum(deltas)),  # type: ignore[arg-type]
                steal=round(100 * deltas[1] / wanted, 1) if wanted else None,
                hypercalls_per_s=round(calls / seconds, 1) if seconds > 0 else 0.0,
                events_per_s=round(events / seconds, 1) if seconds > 0 else 0.0,
                times_ns=v.times_ns,
            ))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------- Prometheus

#: The metric families :func:`prometheus_text` writes: name, type, help.
PROMETHEUS_METRICS: tuple[tuple[str, str, str], ...] = (
    ("xen_vcpu_runstate_seconds_total", "counter",
     "Time the vCPU spent in each runstate (running, runnable, blocked, offline), from VCPUOP_get_runstate_info."),
    ("xen_vcpu_state", "gauge", "1 for the runstate the vCPU is in now, else 0."),
    ("xen_vcpu_online", "gauge", "1 if the vCPU is up, 0 while it is down."),
    ("xen_vcpu_hypercalls_total", "counter", "Hypercalls the vCPU made."),
    ("xen_domain_events_total", "counter", "Event-channel notifications the hypervisor set pending for the domain."),
    ("xen_domain_memory_bytes", "gauge", "Memory of the domain now (tot_pages)."),
    ("xen_domain_memory_max_bytes", "gauge", "The most memory the domain may have (max_pages)."),
    ("xen_domain_memory_ballooned_bytes", "gauge", "Memory the domain's balloon gave back."),
    ("xen_domain_memory_claimed_bytes", "gauge", "Memory claimed for the domain and not yet allocated."),
    ("xen_domain_vcpus", "gauge", "vCPUs of the domain."),
    ("xen_system_time_seconds", "gauge", "The hypervisor's system time (NOW())."),
)  # fmt: skip


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(sample: Sample) -> str:
    """``sample`` in Prometheus' text exposition format (version 0.0.4): the families of
    :data:`PROMETHEUS_METRICS`, labelled ``domain`` (the name), ``domid``, ``vcpu`` and ``state``."""
    lines: dict[str, list[str]] = {name: [] for name, _kind, _help in PROMETHEUS_METRICS}
    for d in sample.domains:
        dom = f'domain="{_label(d.name)}",domid="{d.domid}"'
        lines["xen_domain_events_total"].append(f"xen_domain_events_total{{{dom}}} {d.events}")
        for family, kib in (("xen_domain_memory_bytes", d.memory_kib),
                            ("xen_domain_memory_max_bytes", d.max_memory_kib),
                            ("xen_domain_memory_ballooned_bytes", d.ballooned_kib),
                            ("xen_domain_memory_claimed_bytes", d.claimed_kib)):  # fmt: skip
            lines[family].append(f"{family}{{{dom}}} {kib * 1024}")
        lines["xen_domain_vcpus"].append(f"xen_domain_vcpus{{{dom}}} {len(d.vcpus)}")
        for v in d.vcpus:
            who = f'{dom},vcpu="{v.vcpu}"'
            for state, (name, t) in enumerate(zip(STATE_NAMES, v.times_ns, strict=True)):
                lines["xen_vcpu_runstate_seconds_total"].append(
                    f'xen_vcpu_runstate_seconds_total{{{who},state="{name}"}} {t / 1e9:.9f}')
                lines["xen_vcpu_state"].append(f'xen_vcpu_state{{{who},state="{name}"}} {int(v.state == state)}')
            lines["xen_vcpu_online"].append(f"xen_vcpu_online{{{who}}} {int(v.online)}")
            lines["xen_vcpu_hypercalls_total"].append(f"xen_vcpu_hypercalls_total{{{who}}} {v.hypercalls}")
    lines["xen_system_time_seconds"].append(f"xen_system_time_seconds {sample.time_ns / 1e9:.9f}")
    out = []
    for name, kind, help_text in PROMETHEUS_METRICS:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines[name]]
    return "\n".join(out) + "\n"
