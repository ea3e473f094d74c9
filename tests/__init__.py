"""The project's tests, split as LangChain's partner packages split theirs; both folders mirror the
package (``server/``, ``backends/``, ``evaluation/``, ``wire/``, ``testing/``; ``train/`` for
``langchain_aligner_train``; ``examples/`` and ``benchmarks/`` for those scripts).

``unit_tests/``: in-process and fast, nothing outside the test process: no HTTP server (not even a fake one),
no subprocess, no DeepSpeed launcher; tiny models built in the process. ``make unit_tests``.

``integration_tests/``: real HTTP servers on 127.0.0.1 (the fake TGI/OpenAI servers, the project's server
app), ``serve`` and training processes, DeepSpeed ranks, the example and benchmark scripts, the wheel, the
embedded model's conversion. ``make integration_tests``.

``make test`` runs both (what CI runs). Fixtures are in the ``conftest.py`` files; what several modules share
is in ``helpers/``; test modules never import one another.
"""
