"""Build-time tools, run from a checkout (``make chart``) and by the tests; not installed with the package.

The runtime packages (``steps``, ``workflows``) never import ``tools`` (``tests/test_structure.py`` checks it).
"""
