"""Data: the one container the analyses share (:class:`Dataset`), the built-in digits, and data specs.

``as_dataset`` accepts every form an analysis takes (see :mod:`.dataset`), data specs included: a built-in
name, a ``.npz`` / ``.pt`` file, an image folder, a CSV file or an import path (:func:`load`).
"""
from .dataset import Dataset, as_dataset, digits, shuffled_labels
from .load import BUILTIN_DATA, SPEC_FORMS, from_arrays, load, pair, split

__all__ = ["Dataset", "as_dataset", "digits", "shuffled_labels", "load", "from_arrays", "pair", "split",
           "BUILTIN_DATA", "SPEC_FORMS"]
