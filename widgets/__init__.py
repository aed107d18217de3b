"""Interactive ipywidgets panels over the workbench analyses (one per analysis)."""
from .base import Panel, copy_figure

__all__ = ["Panel", "copy_figure"]
