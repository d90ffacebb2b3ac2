"""Test support shared by the tests and the benchmarks (not shipped in the package).

    llm_server.py     an OpenAI-compatible chat-completions server that answers like real models can
                      (slow, 429/500, untidy JSON, cut off, refusals), in-process or as `python -m`
    label_studio.py   a real Label Studio 1.23.2 in its own virtualenv (.venv-ls), started per session
"""
