"""xenpy: a Xen-compatible paravirtual hypercall layer and guest toolkit.

Layers, lowest first (imports point downward only): :mod:`xenpy.abi` (structures, constants, errno),
:mod:`xenpy.core` (the hypervisor), then the CPU engine, loader, toolstack and :mod:`xenpy.cli`.
"""

__version__ = "0.1.0"
