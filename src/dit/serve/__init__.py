"""`dit serve`: a local web page and JSON API to sample a checkpoint interactively.

The application layer beside :mod:`dit.demo` (below :mod:`dit.cli`): :mod:`.jobs` runs one
generation at a time in a bounded queue, :mod:`.app` is the FastAPI app (API + the page in
``static/``). Needs the ``serve`` extra (fastapi, uvicorn).
"""
