"""Answer feedback: thumbs up / down and "flag as wrong or unsafe" with an optional comment.

Core only (no gradio): ``record`` builds a row from a ``TurnResult``; ``store`` keeps rows in a private SQLite
file; ``export`` writes formula-safe CSV and JSONL. Nothing that identifies a person is stored: no IP, no photo,
no conversation text — only the result id, the provider ids, the triage tier, the rating and the comment.
"""

from dermchat.feedback.record import RATINGS, FeedbackError, feedback_fields, rating_from_like

__all__ = ["RATINGS", "FeedbackError", "feedback_fields", "rating_from_like"]
