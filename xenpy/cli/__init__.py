"""The ``xenpy`` command line (top layer)."""
