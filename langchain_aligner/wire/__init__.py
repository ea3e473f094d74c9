"""The wire protocols the library speaks, one module each, used by its clients and its server alike.

:mod:`~langchain_aligner.wire.tgi` is TGI's API (``/generate``, ``/generate_stream``, error bodies and their
statuses); :mod:`~langchain_aligner.wire.openai_compat` the OpenAI-compatible ``/v1/completions`` and
``/v1/chat/completions``. Each maps :class:`~langchain_aligner.GenerationParams` to its request fields and
back, holds the request and response bodies the server parses and writes, and reads those answers back as a
:class:`~langchain_aligner.backends.Generation` for the backends, so both ends of the wire agree by
construction.
"""
