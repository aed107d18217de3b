"""Interactive ipywidgets panels over the workbench analyses (one per analysis)."""
from .base import Panel, copy_figure, model_argument
from .figure import PanelFigure, empty_figure

__all__ = ["Panel", "PanelFigure", "copy_figure", "empty_figure", "model_argument"]
