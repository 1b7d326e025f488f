"""Starts DermChat's Gradio app from a checkout: ``python app.py`` (the Hugging Face Space's ``app_file``).

The page is built in ``dermchat_ui.app``, which the wheel carries, so ``python -m dermchat serve`` works from a
plain ``pip install .`` as well; this file only launches it and holds no logic of its own.
"""

from __future__ import annotations

import sys

from dermchat_ui.app import main

if __name__ == "__main__":
    main(sys.argv[1:])
