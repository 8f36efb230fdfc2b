"""Everything Ptychodus-facing: product and diffraction HDF5 files, batch folders, conversions, CLI.

Depends on the `ptycho` core; the core never imports this package.
"""
