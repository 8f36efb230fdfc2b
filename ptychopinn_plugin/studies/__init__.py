"""Scientific studies users run to trust the reconstructor (`ptychopinn study ...`; docs/studies.md).

Modules (one job each):
  config        settings: training budget, the studies' scales (the CLI's defaults)
  common        held-out split, timed training + reconstruction, scores, results.json
  dose          dose response: Poisson NLL vs amplitude MAE loss at high and low dose
  compare       PINN vs supervised baseline vs pty-chi LSQML (simulated and measured scans)
  lsqml         pty-chi's LSQML on a ScanData (conventions bridge; runs `lsqml_worker` in a child process)
  lsqml_worker  the child process: the only module that imports pty-chi / PyTorch
  real_scan     detector crop and central subset of a measured scan; its simulated twin
  residual      Poisson deviance of measured counts given a reconstruction (no ground truth needed)
  figures       the studies' figures;   report   results.md tables
Importing this package imports neither TensorFlow nor PyTorch.
"""
