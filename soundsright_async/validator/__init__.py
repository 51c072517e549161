"""The validator daemon: competition epochs end to end (docs/validator.md).

Importing this package is cheap; the daemon lives in ``validator._daemon`` (``Validator``),
its settings in ``validator.settings`` and the pure judge in ``validator.judging``.
"""
