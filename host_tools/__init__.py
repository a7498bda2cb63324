"""x86 host tools for edgepose: PoseResNet, config, COCO/MPII data, training, evaluation and
(model conversion commands added by their own modules). Entry point: ``host_tools <command>``
or ``python -m host_tools``."""

__all__ = ["UserError"]

from host_tools.errors import UserError  # noqa: E402
