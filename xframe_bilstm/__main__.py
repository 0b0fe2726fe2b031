"""``python -m xframe_bilstm``: the command line of :mod:`xframe_bilstm.cli`."""

import sys

from .cli import main

sys.exit(main())
