"""Gradio adapters over the DermChat core (the only place gradio is imported, with app.py)."""
