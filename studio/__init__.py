"""The Gradio UI. Handlers are thin: read inputs, call `projects`, format outputs."""
import os

# The studio is local and private: no usage analytics, no hub calls at import.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
