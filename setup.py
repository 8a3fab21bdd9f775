"""Package discovery for the layout of the design card: core/ is `prunekit`, plugins/ is
`prunekit.plugins`. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

ROOTS = {"prunekit": "core", "prunekit.plugins": "plugins"}

packages = [f"{name}.{sub}" if sub else name for name, folder in ROOTS.items() for sub in ["", *find_packages(folder)]]
setup(packages=packages, package_dir=ROOTS)
