"""The demo moved to ``host_tools.demo`` (it exports models with torch, which the device package
never imports). Run ``make demo`` or ``python -m host_tools.demo``."""
from __future__ import annotations

import sys


def main() -> int:
    print("edgepose.demo: moved to host_tools.demo (it needs torch and the host tools): run `make demo` or "
          "`python -m host_tools.demo`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
