"""Reference backend: plain NumPy/SciPy, written to be read. It is the spec."""
