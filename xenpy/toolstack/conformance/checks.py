"""The lines an in-guest conformance test prints, parsed (``guest/include/xenpy-guest/check.h``).

A check line::

    check <id>: [<spec section>] <what>: got <X> want <Y> ok|FAIL[ (<kind>-dependent)]

where ``<kind>`` is one of :data:`DEPENDENCIES`: a value that is not compared between hypervisors.

the profile line ``Profile: <name> (<how chosen>)`` and the verdict ``Test result: <verdict>``, which is the
last console line of a test that ran to its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Outcomes of one test run, best first. CRASH: the console has no verdict line (the kernel died or hung).
OUTCOMES = ("SUCCESS", "SKIP", "ERROR", "FAILURE", "CRASH")

#: What a check's value may depend on, so that it is not compared between hypervisors (``check_sched()``,
#: ``check_domain()``, ``check_cpu()`` in the guest).
DEPENDENCIES = {
    "scheduler": "scheduling (a remote vCPU's state, a version counter)",
    "domain": "whether the kernel is domain 0 (as on real Xen under the oracle) or a domU (as on xenpy)",
    "cpu": "the CPU under the hypervisor, where an emulator differs from hardware (QEMU's TCG under the oracle)",
}
_CHECK = re.compile(
    r"^check (?P<id>[A-Za-z0-9_.-]+): \[(?P<section>[^\]]*)\] (?P<what>.*): got (?P<got>\S+) want (?P<want>\S+)"
    rf" (?P<result>ok|FAIL)(?: \((?P<dependent>{'|'.join(DEPENDENCIES)})-dependent\))?$"
)
_VERDICT = re.compile(r"^Test result: (?P<verdict>SUCCESS|SKIP|ERROR|FAILURE)$")
_PROFILE = re.compile(r"^Profile: (?P<name>\S+) \(")
_SUBOP = re.compile(
    r"\b(?:[A-Z][A-Z0-9]*OP|XENMEM|XENVER|MMUEXT|CONSOLEIO|VMASST_CMD)_[A-Za-z0-9_]+\b|\bHYPERVISOR_[a-z0-9_]+\b"
)


@dataclass(frozen=True)
class Check:
    """One check line.

    Attributes:
        id: unique within its test, the same on every hypervisor.
        section: the spec section the check cites.
        what: what was done (names the sub-ops it exercises).
        got: the value observed, as printed.
        want: the value the test expects of its profile, as printed.
        ok: the test's own verdict on the check (``got == want``).
        depends_on: a key of :data:`DEPENDENCIES` if the value depends on it (then it is not compared between
            hypervisors), or None.
    """

    id: str
    section: str
    what: str
    got: str
    want: str
    ok: bool
    depends_on: str | None = None

    @property
    def compared(self) -> bool:
        """Whether the value is compared with another hypervisor's."""
        return self.depends_on is None

    @property
    def subops(self) -> tuple[str, ...]:
        """The sub-op and hypercall names ``what`` mentions (``VCPUOP_up``, ``HYPERVISOR_set_timer_op``)."""
        return tuple(dict.fromkeys(_SUBOP.findall(self.what)))


@dataclass(frozen=True)
class GuestResult:
    """What one run of a test kernel printed.

    Attributes:
        outcome: one of :data:`OUTCOMES`.
        checks: the check lines, in order.
        profile: the profile the kernel said it expects (its ``Profile:`` line), or None.
        console: the whole console.
    """

    outcome: str
    checks: tuple[Check, ...]
    profile: str | None
    console: str

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


def parse_console(console: str) -> GuestResult:
    """The checks, profile and outcome of a test kernel's console (CRASH when it has no verdict line)."""
    checks: list[Check] = []
    profile = None
    outcome = "CRASH"
    for line in console.splitlines():
        line = line.rstrip()
        if m := _CHECK.match(line):
            checks.append(
                Check(m["id"], m["section"], m["what"], m["got"], m["want"], m["result"] == "ok", m["dependent"])
            )
        elif m := _VERDICT.match(line):
            outcome = m["verdict"]
        elif (m := _PROFILE.match(line)) and profile is None:
            profile = m["name"]
    return GuestResult(outcome, tuple(checks), profile, console)
