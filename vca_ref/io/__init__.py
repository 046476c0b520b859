"""File I/O: safetensors checkpoints with PyTorch names and layouts (no pickle)."""
