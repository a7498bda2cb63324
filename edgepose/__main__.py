"""``python -m edgepose run|info`` (same as the ``edgepose`` command)."""
import sys

from .cli import main

sys.exit(main())
