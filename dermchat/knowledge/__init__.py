"""The knowledge base (one Markdown file per condition) and retrieval/explanation over it.

Light on import: heavy libraries (sentence-transformers, langchain, faiss) load inside functions, so the
plugin listing and the CLI stay fast.
"""
