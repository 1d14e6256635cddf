"""VITS and MB-iSTFT-VITS in PyTorch: models, Piper import/export, training."""
