"""`python -m scaling COMMAND ...`: the console script `scaling COMMAND ...` (scaling/cli.py).

The entry point lives here, not in scaling/train.py, so that the library never imports the
command line: `python -m scaling train --config experiments/gpt2.py:tiny --workdir runs/demo`.
"""
import sys

from scaling import cli

if __name__ == "__main__":
    sys.exit(cli.main())
