"""``host_tools <command>``: one parser, one sub-command per module.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` which adds its
sub-parser and sets ``func(args) -> int`` as its handler (``parser.set_defaults(func=...)``).
A module that is not installed (yet) is skipped, so commands can land independently.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional, Sequence

from host_tools.errors import UserError

COMMAND_MODULES: List[str] = [
    "host_tools.train",
    "host_tools.valid",
    "host_tools.export_onnx",
    "host_tools.import_onnx",
    "host_tools.rknn_commands",
    "host_tools.calib",
    "host_tools.verify",
    "host_tools.inspect_weights",
    "host_tools.npu_run",
    "host_tools.pull",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available command registered."""
    parser = argparse.ArgumentParser(
        prog="host_tools",
        description="edgepose host tools: train / evaluate PoseResNet and convert it for the NPU.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only skip when the command module itself is absent, not when one of its imports is broken.
            if exc.name == name:
                continue
            raise
        register = getattr(mod, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the process exit status (2 for user errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        rc = func(args)
    except UserError as exc:
        print(f"host_tools {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"host_tools {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
