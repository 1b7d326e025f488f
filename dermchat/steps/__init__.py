"""The steps of a turn, one module each (intake, quality, diagnosis, morphology, explanation, references,
finish), over ``Turn`` (the running turn's state) and ``streaming`` (a provider call in a worker thread).
``dermchat/engine.py`` sequences them."""

from dermchat.steps.streaming import StepOutcome, run_streaming

__all__ = ["StepOutcome", "run_streaming"]
