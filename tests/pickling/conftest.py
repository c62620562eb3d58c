"""The helper scripts here run as ``__main__`` in child interpreters, never as modules.

``--doctest-modules`` would import them while collecting; ``ship_by_value.py``
reads its command line at import, so a bare ``python -m pytest`` (the README's
command, whose ``sys.argv`` has no arguments) failed to collect.
"""

collect_ignore = ["ship_by_value.py", "receive.py"]
