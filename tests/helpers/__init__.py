"""Helpers that several test modules share, one module per concept; test modules import them from here and
never from one another. Fixtures live in the ``conftest.py`` files; helpers that users of the library need too
live in :mod:`langchain_aligner.testing`."""
