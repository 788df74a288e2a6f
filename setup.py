"""The package list, which pyproject.toml cannot map: resources/ and examples/ ship as workbench/resources and
workbench/examples (what they hold is pyproject's [tool.setuptools.package-data])."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["workbench", "workbench.*"]) + ["workbench.resources", "workbench.examples"],
    package_dir={"workbench.resources": "resources", "workbench.examples": "examples"},
)
