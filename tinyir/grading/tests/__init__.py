"""The built-in grading tests, one module per exercise notebook (see tinyir.grading.checks).

They are loaded by file path, not imported as a package; this file only makes setuptools ship
them with tinyir.
"""
