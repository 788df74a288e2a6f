"""A sweep trial in its own process (``--parallel``): ``python -m workbench.core.sweep JOB_JSON``."""
import json
import sys

from workbench.core.sweep.parallel import child

if __name__ == "__main__":
    sys.exit(child(json.loads(sys.argv[1])))
