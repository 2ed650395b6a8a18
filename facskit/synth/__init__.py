"""facskit.synth: a labelled synthetic face/AU generator writing the DISFA, BP4D and folder layouts.

The real datasets are licensed, so this generator exercises every path from raw dataset to trained model
and provides training data for the default model: a parametric 68-landmark face with identity, pose,
lighting and FACS AU geometry + appearance (``FaceRenderer``), or real faces animated by the same AU
fields (texture mode). Ground truth (AU intensities, landmarks, pose, identity) goes to a Parquet sidecar.
"""

from facskit.synth.face_model import SYNTH_AUS, Identity, expression_shape, identity_shape, sample_identity
from facskit.synth.render import FaceRenderer, Pose
from facskit.synth.scene import Scene, sample_scene
from facskit.synth.sequence import SynthFrame, au_timeline, generate_sequence, pose_timeline
from facskit.synth.texture import animate_face
from facskit.synth.writers import FORMATS, GROUND_TRUTH_FILE, MANIFEST_FILE, label_intensity, write_dataset

__all__ = [
    "FORMATS",
    "GROUND_TRUTH_FILE",
    "MANIFEST_FILE",
    "SYNTH_AUS",
    "FaceRenderer",
    "Identity",
    "Pose",
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


def render_face(
    identity: Identity,
    au_intensities: dict[int, float],
    pose: Pose,
    rng,
    size: int = 256,
    scene: Scene | None = None,
):  # type: ignore[no-untyped-def]
    """One frame -> (uint8 RGB (size, size, 3), float32 (68, 2) landmarks in pixels); see FaceRenderer."""
    renderer = FaceRenderer(size)
    return renderer.render(
        identity, au_intensities, pose, rng, scene if scene is not None else sample_scene(rng)
    )
