"""Programs that measure the package (speed, the GPU benchmark, the tables of docs/REAL_DATA.md); see README.md.

Not part of the installed package: run them from the repository root (`python benchmarks/<name>.py ...`).
"""
