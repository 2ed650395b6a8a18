"""AU heatmap networks (BMVC'18 Hourglass, AAAI'20 SCC), their registry, specs and checkpoints.

Every model maps (B, 3, S, S) normalised RGB to heatmaps (B, P, S/4, S/4) and carries a frozen
`ModelSpec`; `preprocess` and `intensity_from_heatmaps` derive the input and the 0-5 readout from it.

Names are re-exported lazily (PEP 562): importing the package, or its torch-free `facskit.models.spec`
(which the ONNX Runtime path reads specs with), does not import torch.
"""

from typing import TYPE_CHECKING

from facskit.lazy import lazy_exports

__all__ = [
    "AUModel",
    "BP4D_AUS",
    "DISFA_AUS",
    "FORMAT_VERSION",
    "ModelSpec",
    "build_model",
    "create_model",
    "import_audetector",
    "intensity_from_heatmaps",
    "list_models",
    "load_checkpoint",
    "load_model",
    "load_trunk_weights",
    "preprocess",
    "preprocess_numpy",
    "register_model",
    "save_checkpoint",
]

_HOMES = {
    "AUModel": "facskit.models.base",
    "BP4D_AUS": "facskit.models.spec",
    "DISFA_AUS": "facskit.models.spec",
    "FORMAT_VERSION": "facskit.models.checkpoint",
    "ModelSpec": "facskit.models.spec",
    "build_model": "facskit.models.registry",
    "create_model": "facskit.models.registry",
    "import_audetector": "facskit.models.checkpoint",
    "intensity_from_heatmaps": "facskit.models.spec",
    "list_models": "facskit.models.registry",
    "load_checkpoint": "facskit.models.checkpoint",
    "load_model": "facskit.models.checkpoint",
    "load_trunk_weights": "facskit.models.resnet",
    "preprocess": "facskit.models.spec",
    "preprocess_numpy": "facskit.models.spec",
    "register_model": "facskit.models.registry",
    "save_checkpoint": "facskit.models.checkpoint",
}

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.base import AUModel
    from facskit.models.checkpoint import (
        FORMAT_VERSION,
        import_audetector,
        load_checkpoint,
        load_model,
        save_checkpoint,
    )
    from facskit.models.registry import build_model, create_model, list_models, register_model
    from facskit.models.resnet import load_trunk_weights
    from facskit.models.spec import (
        BP4D_AUS,
        DISFA_AUS,
        ModelSpec,
        intensity_from_heatmaps,
        preprocess,
        preprocess_numpy,
    )


__getattr__ = lazy_exports(__name__, _HOMES)
