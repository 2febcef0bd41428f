"""Exit 7 on every rank, after saying so."""

import sys

print("exit7: exiting with 7", flush=True)
sys.exit(7)
