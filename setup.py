"""Maps the design card's top-level folders onto import names: core/ is `histo`, plugins/ is `histo.plugins`.

pyproject.toml cannot list mapped subpackages by discovery, so they are found here.
"""

from setuptools import find_packages, setup

packages = ["histo"] + [f"histo.{p}" for p in find_packages("core")]
packages += ["histo.plugins"] + [f"histo.plugins.{p}" for p in find_packages("plugins")]
dirs = {"histo": "core", "histo.plugins": "plugins"}
setup(packages=packages, package_dir=dirs)
