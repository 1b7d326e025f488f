"""``python -m dermchat`` entry point."""

import sys

from dermchat.cli import main

sys.exit(main())
