"""User-study mode: study definitions, participant assignment, the participant flow, storage and export.

Nothing here imports gradio: the flow in ``session.py`` is a plain state machine that the Gradio pages in
``dermchat_ui/study.py`` (and the tests) drive, so a study runs the same way whatever the front end.
"""

from dermchat.study.definition import Study, StudyDefinitionError, load_study

__all__ = ["Study", "StudyDefinitionError", "load_study"]
