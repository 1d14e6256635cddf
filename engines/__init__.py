"""Compute engines: audio, speech, text and voice models.

Pure Python/PyTorch. Nothing here knows about SQLite, the workspace layout or
Gradio; callers pass paths, arrays and callbacks in.
"""
