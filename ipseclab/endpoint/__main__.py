"""``python -m ipseclab.endpoint SPEC.json``: run one endpoint (see runner.py for the line protocol)."""

import sys

from .runner import main

sys.exit(main(sys.argv[1:]))
