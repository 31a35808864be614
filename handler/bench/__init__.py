"""`fh bench`: the book engine (engine.py), the data plane (dataplane.py), gap recovery (recovery.py)."""
