"""Vision-language diagnosis (local transformers models and OpenAI-compatible servers) and text generation.

Modules are imported lazily by ``plugins/vlm.py``: nothing here imports torch or transformers at module top.
"""
