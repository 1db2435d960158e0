import sys

from .units import dispatch

sys.exit(dispatch(sys.argv[1:]))
