"""``python -m host_tools`` == ``host_tools``."""
import sys

from host_tools.cli import main

sys.exit(main())
