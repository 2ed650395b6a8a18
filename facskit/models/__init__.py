"""AU heatmap networks (BMVC'18 Hourglass, AAAI'20 SCC), their registry, specs and checkpoints.

Every model maps (B, 3, S, S) normalised RGB to heatmaps (B, P, S/4, S/4) and carries a frozen
`ModelSpec`; `preprocess` and `intensity_from_heatmaps` derive the input and the 0-5 readout from it.
"""

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
    AUModel,
    ModelSpec,
    intensity_from_heatmaps,
    preprocess,
)

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
    "register_model",
    "save_checkpoint",
]
