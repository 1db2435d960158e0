"""The PyTorch front-end: pruning methods, quantization (integer and term quantization), joint
optimization during training, export to an integer model, and `python -m software compress`."""
