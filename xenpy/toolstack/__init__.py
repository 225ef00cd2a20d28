"""The toolstack: what xl and libxl do around the hypervisor — boot a PV image into a domain, serve its console
ring, trace its hypercalls, and run it to completion.

* :mod:`xenpy.toolstack.boot`: build a domain from a PV ELF image (libxl + libxenguest's part).
* :mod:`xenpy.toolstack.console`: the console ring backend (xenconsoled's part).
* :mod:`xenpy.toolstack.trace`: one JSON line per hypercall.
"""
