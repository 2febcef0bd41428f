"""Print that the rank started, then sleep the given seconds."""

import sys
import time

print("sleep: started", flush=True)
time.sleep(float(sys.argv[1]))
