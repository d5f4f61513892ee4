"""`dit serve`: a local web page and JSON API to sample a checkpoint interactively.

An application layer beside :mod:`dit.study` (below :mod:`dit.demo` and :mod:`dit.cli`):
:mod:`.jobs` runs one generation at a time in a bounded queue, :mod:`.requests` checks what a
request asks for, :mod:`.results` draws a job, :mod:`.routes` holds the endpoints and :mod:`.app`
builds the FastAPI app (API + the page in ``static/``). Needs the ``serve`` extra (fastapi, uvicorn).
"""
