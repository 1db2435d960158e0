"""``python -m software compress ...`` / ``python -m software evaluate model.npz`` (see software/frontend/compress.py)."""
import sys

from software.frontend.compress import main

sys.exit(main())
