"""Study mode's plugin entry point (``study``): listed with the other plugins, registers no hooks.

Study turns have one writer, the study flow (``dermchat/study/session.py``): it runs the case, knows the turn is a
study's, and stores the engine's result (the policy-checked one, never an observer's copy) through
``dermchat/study/turnlog.py``. A write that fails (the database is down, or the code was deleted meanwhile)
reaches the participant instead of being caught and listed like a ``turn_completed`` error; ordinary chat turns
are never stored.
"""

from __future__ import annotations
