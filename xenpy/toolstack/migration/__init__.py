"""Save, restore and migration of PV domains in Xen's own stream format (xl save files, libxl/libxc stream v2/v3).

:mod:`.stream` reads and writes the format, :mod:`.save` suspends a domain and writes it, :mod:`.restore` builds a
new domain from a stream.
"""
