"""The bottom layer: storage and formats (`io`), the task runtime (`runtime`), errors.

Imports nothing of the project: taggers/, dedup/ and training/ build on it, pipeline/ (the
command line, mix files, stages) sits on top. tests/test_layers.py holds every room to this.
"""
