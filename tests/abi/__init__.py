"""ABI tests: xenpy.abi layouts against gcc, the spec and themselves; the guest C headers."""
