"""PtychoPINN core: physics-informed neural network reconstruction for ptychography.

Importing this package imports no TensorFlow; modules that need it import it on first use.
Layout (one job per module):
  scan        the ScanData type            npz_io     reference NPZ read/write
  simulate    synthetic scans              grouping   nearest-neighbour groups and offsets
  physics     differentiable forward model (keras.ops, XLA)
  stitching   patches -> object canvas     metrics    image-quality metrics
  networks    PINN and supervised models   training   fit loop, callbacks, losses
  datasource  in-memory / streamed data    inference  prediction + stitching
  bundle      model bundle (wts.h5.zip)    backend    the few TensorFlow-specific helpers
The modules params, raw_data, probe, loader, tf_helper, model_manager and workflows.components are a
thin compatibility facade for Ptychodus 1.7's built-in PtychoPINN integration.
"""

__version__ = "0.1.0"
