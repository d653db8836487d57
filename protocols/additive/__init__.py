"""The additive family: additive shares for n >= 2 parties and a dealer process (``family``)."""

from protocols.additive.family import AdditiveFamily

__all__ = ["AdditiveFamily"]
