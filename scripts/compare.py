#!/usr/bin/env python3
"""Convert a Keras recurrent layer to PyTorch and report how closely they agree.

A thin entry point onto ``xframe_bilstm.cli``; run with ``--help`` for the options.
"""

from xframe_bilstm.cli import run

if __name__ == "__main__":
    run()
