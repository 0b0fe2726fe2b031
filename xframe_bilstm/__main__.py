"""``python -m xframe_bilstm``: the command line of :mod:`xframe_bilstm.cli`."""

from .cli import run

run()
