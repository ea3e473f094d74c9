"""Unit tests: in-process, fast, nothing outside the test process (see :mod:`tests`)."""
