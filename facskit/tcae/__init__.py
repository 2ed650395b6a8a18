"""Self-supervised TCAE pretraining (CVPR 2019) and the use of its embeddings.

``pairs`` (frame pairs + curriculum), ``losses`` (paper eq. 7), ``config`` (the run schema), ``pretrain``
(the training loop), ``show`` (inspection grids), ``probe`` (linear probe / fine-tune with few labels).
The network itself is :mod:`facskit.models.tcae`. Submodules are imported on use, so importing this package
costs nothing.
"""
