"""Small model factories to copy: ``python -m software compress --model examples.models.resnet:digits_resnet``."""
