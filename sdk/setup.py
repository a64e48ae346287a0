"""The SDK's one compiled part: veil-proxy's row rewrite loop (veil_sdk/proxy/_rows.c).

Optional: when it cannot be built (no C compiler, no Python headers) the SDK installs without it
and veil-proxy runs the same loop in pure Python (veil_sdk/proxy/rows.py). Everything else about
the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("veil_sdk.proxy._rows", ["veil_sdk/proxy/_rows.c"], optional=True)])
