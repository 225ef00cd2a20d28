"""``--trace``: one JSON line per hypercall, with the sub-op named."""

from __future__ import annotations

import io
import json

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VCPUOP_get_runstate_info, VCPUOP_is_up
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.trace import HypercallTracer


def test_trace_lines() -> None:
    hv = Hypervisor(memory_mib=16)
    d = hv.create_domain(max_vcpus=2, memory_mib=4)
    d.unpause()
    stream = io.StringIO()
    tracer = HypercallTracer(hv, stream)
    buf = d.alloc_guest(48)
    v0 = d.vcpus[0]
    assert hv.hypercall(v0, Hypercall.vcpu_op, VCPUOP_get_runstate_info, 0, buf) == 0
    assert hv.hypercall(v0, Hypercall.vcpu_op, VCPUOP_is_up, 7, 0) == -XenErrno.ENOENT
    assert hv.hypercall(v0, 11) == -XenErrno.ENOSYS
    tracer.close()
    hv.hypercall(v0, Hypercall.vcpu_op, VCPUOP_is_up, 1, 0)  # not traced after close
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == tracer.count == 3
    first, second, third = lines
    assert first == {"t_ns": hv.now_ns(), "domid": d.domid, "vcpu": 0, "nr": 24, "name": "vcpu_op",
                     "op": "VCPUOP_get_runstate_info", "args": [VCPUOP_get_runstate_info, 0, buf], "result": 0}
    assert second["op"] == "VCPUOP_is_up" and second["result"] == -XenErrno.ENOENT
    assert third["nr"] == 11 and "op" not in third and third["result"] == -XenErrno.ENOSYS
