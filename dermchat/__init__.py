"""DermChat: chat about a skin photo through pluggable quality, diagnosis, explanation and reference steps.

The core package never imports gradio; the UI (``app.py``) is a thin adapter over :func:`run_turn`.
"""

__version__ = "0.1.0"
