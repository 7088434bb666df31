"""Compiled (numba) kernels over Arrow buffers, shared by stages; each pinned by golden-value tests."""
