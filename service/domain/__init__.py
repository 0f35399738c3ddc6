"""The pure domain: plain data in, decisions out, no I/O."""
