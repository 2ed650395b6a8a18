"""facskit.synth: a labelled synthetic face/AU generator writing the DISFA, BP4D and folder layouts.

The real datasets are licensed, so this generator exercises every path from raw dataset to trained model
and provides training data for the default model: a parametric 68-landmark face with identity, pose,
lighting and FACS AU geometry + appearance (``FaceRenderer``), or real faces animated by the same AU
fields (texture mode). Ground truth (AU intensities, landmarks, pose, identity) goes to a Parquet sidecar.

Names are re-exported lazily (PEP 562): rendering a face (the backend check's synthetic faces) does not
import texture mode's scipy or the dataset writers' pandas, 0.6 s of a first backend check.
"""

from typing import TYPE_CHECKING

from facskit.lazy import lazy_exports

_HOMES = {
    "SYNTH_AUS": "facskit.synth.face_model",
    "Identity": "facskit.synth.face_model",
    "expression_shape": "facskit.synth.face_model",
    "identity_shape": "facskit.synth.face_model",
    "sample_identity": "facskit.synth.face_model",
    "FaceRenderer": "facskit.synth.render",
    "Pose": "facskit.synth.render",
    "render_face": "facskit.synth.render",
    "Scene": "facskit.synth.scene",
    "sample_scene": "facskit.synth.scene",
    "SynthFrame": "facskit.synth.sequence",
    "au_timeline": "facskit.synth.sequence",
    "generate_sequence": "facskit.synth.sequence",
    "pose_timeline": "facskit.synth.sequence",
    "animate_face": "facskit.synth.texture",
    "FORMATS": "facskit.synth.writers",
    "GROUND_TRUTH_FILE": "facskit.synth.writers",
    "MANIFEST_FILE": "facskit.synth.writers",
    "label_intensity": "facskit.synth.writers",
    "write_dataset": "facskit.synth.writers",
}

__all__ = [
    "FORMATS",
    "FaceRenderer",
    "GROUND_TRUTH_FILE",
    "Identity",
    "MANIFEST_FILE",
    "Pose",
    "SYNTH_AUS",
    "Scene",
    "SynthFrame",
    "animate_face",
    "au_timeline",
    "expression_shape",
    "generate_sequence",
    "identity_shape",
    "label_intensity",
    "pose_timeline",
    "render_face",
    "sample_identity",
    "sample_scene",
    "write_dataset",
]

if TYPE_CHECKING:  # pragma: no cover
    from facskit.synth.face_model import (
        SYNTH_AUS,
        Identity,
        expression_shape,
        identity_shape,
        sample_identity,
    )
    from facskit.synth.render import FaceRenderer, Pose, render_face
    from facskit.synth.scene import Scene, sample_scene
    from facskit.synth.sequence import SynthFrame, au_timeline, generate_sequence, pose_timeline
    from facskit.synth.texture import animate_face
    from facskit.synth.writers import (
        FORMATS,
        GROUND_TRUTH_FILE,
        MANIFEST_FILE,
        label_intensity,
        write_dataset,
    )

__getattr__ = lazy_exports(__name__, _HOMES)
