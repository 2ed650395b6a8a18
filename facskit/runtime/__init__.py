"""facskit.runtime: where a trained AU network runs, below the analysis that drives it.

* :mod:`~facskit.runtime.backends`: the ``Backend`` interface (aligned uint8 crops in, heatmaps out) and its
  torch (fp32/bf16, CUDA AMP) and ONNX Runtime (fp32/int8) implementations.
* :mod:`~facskit.runtime.check`: which backend and precision ``auto`` picks on this machine (measured
  against torch fp32, cached per model and CPU).
* :mod:`~facskit.runtime.export`: ONNX export, its cache and its verification against PyTorch.
* :mod:`~facskit.runtime.quantize`: static int8 quantisation calibrated on aligned faces.

Nothing here imports :mod:`facskit.analyze`; the modules are imported by path (no re-exports), so importing
the package loads neither torch nor ONNX Runtime.
"""
