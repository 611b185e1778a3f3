"""Which packages the distribution holds; everything else is in pyproject.toml.

The rule tables stay reviewable in the repository's top-level `reference_ranges/` and are shipped inside the
package as `labservice.reference_ranges` (package data: the CSV files and their README), so a wheel installed
anywhere carries them and an editable install reads the reviewed files themselves (labservice/rule_tables.py).
pyproject.toml can map a directory to a package but cannot add it to the packages it finds, hence this file.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["labservice", "labservice.*"]), "labservice.reference_ranges"],
    package_dir={"labservice.reference_ranges": "reference_ranges"},
)
