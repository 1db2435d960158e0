"""``python -m software compress ...`` / ``python -m software evaluate model.npz`` (see software/compress.py)."""
import sys

from .compress import main

sys.exit(main())
