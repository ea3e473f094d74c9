"""The standalone TGI-compatible server: a dynamic-batching engine and a FastAPI app on top of it."""
