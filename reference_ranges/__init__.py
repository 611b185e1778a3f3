"""The rule tables, shipped inside the wheel as the package data of `labservice.reference_ranges`.

Only the CSV files and README.md here matter; this file makes the directory a package so that
`importlib.resources` finds it (labservice/rule_tables.py).
"""
