"""Integration tests: real HTTP servers, subprocesses, DeepSpeed ranks, scripts (see :mod:`tests`)."""
