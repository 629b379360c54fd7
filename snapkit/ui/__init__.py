"""``snapkit ui``: a local web workbench over the library (dataset, recording, review, training, listening).

Import :func:`snapkit.ui.app.create_app` only where the web framework is wanted: this package's ``__init__`` stays
empty so that ``snapkit --help`` never loads it.
"""
