"""The ``billing`` command for operators and replays."""
