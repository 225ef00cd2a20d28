"""The conformance suite: in-guest test kernels run on xenpy and on real Xen, their check lines compared.

- :mod:`.checks`: the check and verdict lines a test kernel prints, parsed.
- :mod:`.oracle`: booting a kernel as dom0 of a real Xen under QEMU, its console captured.
- :mod:`.fetch`: Debian's Xen builds, fetched and unpacked.
- :mod:`.suite`: the suite's tests, run on xenpy per profile and on each real Xen; the result matrix.
- :mod:`.report`: the matrix as text, JSON and JUnit XML.
"""
