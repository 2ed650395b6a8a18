"""MediaPipe's face mesh and blendshape models, run on a face that facskit's own front end found.

The bundle (``model/face_landmarker_v2.task``, Apache-2.0, see ``model/NOTICE``) holds three TFLite models;
facskit runs two of them with LiteRT (``ai-edge-litert``), the runtime MediaPipe itself uses, so the numbers
are MediaPipe's without its graph or its OpenCV build (``mediapipe`` needs ``opencv-contrib-python``, which
clashes with facskit's ``opencv-python-headless``: both install ``cv2``). The steps follow MediaPipe's face
landmarker graph:

1. **Region of interest.** MediaPipe's tracking path crops a square around the previous frame's 478-point
   mesh, rotated so the eye corners (mesh points 33 and 263) are level, 1.5 times the mesh's extent
   (``face_landmarker_graph.cc``). We seed it from dlib's 68 landmarks (their box, eye line, x1.5), run the
   mesh once, then crop again from that mesh exactly as the tracking path would and run the mesh again: the
   second crop is the one the models were trained to see, whatever the first guess.
2. **Face mesh.** 256x256 RGB in [0, 1] -> 478 (x, y, z) in crop pixels, and a face-presence logit.
3. **Blendshapes.** The 146-point subset of the mesh (``kLandmarksSubsetIdxs`` of
   ``face_blendshapes_graph.cc``) as (x, y) image pixels -> 52 coefficients in [0, 1] (ARKit names).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from facskit.errors import FacskitError

MODEL_DIR = Path(__file__).resolve().parent / "model"
BUNDLE = MODEL_DIR / "face_landmarker_v2.task"
BUNDLE_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MESH_MODEL = "face_landmarks_detector.tflite"
BLENDSHAPE_MODEL = "face_blendshapes.tflite"
MESH_INPUT = 256  # pixels, the face mesh model's square input
ROI_SCALE = 1.5  # face_landmarker_graph.cc: the crop is 1.5 times the face's extent
LEFT_EYE_CORNER, RIGHT_EYE_CORNER = 33, 263  # mesh points that fix the crop's rotation
# face_blendshapes_graph.cc, kLandmarksSubsetIdxs: the mesh points the blendshape model reads, in order.
BLENDSHAPE_SUBSET = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70,
    78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149,
    150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195,
    197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300,
    308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375,
    377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)  # fmt: skip
# face_blendshapes_graph.cc, kBlendshapeNames: the model's 52 outputs, in order. "Left" is the subject's left.
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft",
    "noseSneerRight",
)  # fmt: skip
# Inner-lip point pairs (upper, lower) of the mesh, centre and either side: the lips' opening for AU25.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
EYE_OUTER_CORNERS = (33, 263)


class TeacherUnavailable(FacskitError):
    """The teacher's runtime or model file is missing or not the expected one."""


@dataclass(frozen=True)
class TeacherReading:
    """What the teacher says of one face.

    scores: (52,) float32 blendshape coefficients in [0, 1], BLENDSHAPE_NAMES order. presence: the mesh
    model's face probability (0-1). mesh: (478, 2) float32 image pixels. lips_apart: the inner lips' largest
    gap over the eye-corner distance (0 = closed; about 0.5 for a wide open mouth).
    """

    scores: np.ndarray
    presence: float
    mesh: np.ndarray
    lips_apart: float


def _interpreter(model: bytes, threads: int):  # -> ai_edge_litert.interpreter.Interpreter
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise TeacherUnavailable(
            "the teacher needs LiteRT: pip install 'facskit[teach]' (the ai-edge-litert package)"
        ) from error
    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def read_bundle(path: Path = BUNDLE) -> dict[str, bytes]:
    """The bundle's member files, after checking it is exactly the recorded file (size and SHA-256)."""
    if not path.is_file():
        raise TeacherUnavailable(
            f"{path}: the teacher's model bundle is missing (see {MODEL_DIR / 'NOTICE'})"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BUNDLE_SHA256:
        raise TeacherUnavailable(f"{path}: SHA-256 {digest} is not the recorded {BUNDLE_SHA256}")
    with zipfile.ZipFile(path) as bundle:
        return {name: bundle.read(name) for name in (MESH_MODEL, BLENDSHAPE_MODEL)}


def _crop_matrix(centre: np.ndarray, size: float, angle: float) -> np.ndarray:
    """(2, 3) affine map from image pixels to the MESH_INPUT crop: rotate by -angle about centre, scale."""
    c, s = np.cos(angle), np.sin(angle)
    linear = np.array([[c, s], [-s, c]]) * (MESH_INPUT / size)
    return np.hstack([linear, (MESH_INPUT / 2 - linear @ centre)[:, None]])


def _square_roi(points: np.ndarray, angle: float) -> tuple[np.ndarray, float]:
    """Centre and side of the square around ``points`` (N, 2) in the frame rotated by ``angle``, scaled
    by ROI_SCALE."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, s], [-s, c]])
    rotated = points @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    centre = rotation.T @ ((low + high) / 2)
    return centre, float((high - low).max()) * ROI_SCALE


class BlendshapeTeacher:
    """MediaPipe's blendshapes for a face given by its dlib 68 landmarks; one instance per process.

    ``read(image, landmarks)`` -> :class:`TeacherReading`. ``image`` is (H, W, 3) uint8 RGB (grey images
    repeated to 3 channels), ``landmarks`` (68, 2) image pixels. About 15 ms a face on one core.
    """

    def __init__(self, threads: int = 1, bundle: Path = BUNDLE) -> None:
        self.threads = threads
        self.bundle = bundle

    @cached_property
    def _models(self) -> tuple:
        files = read_bundle(self.bundle)
        return _interpreter(files[MESH_MODEL], self.threads), _interpreter(
            files[BLENDSHAPE_MODEL], self.threads
        )

    def _mesh(self, image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float]:
        mesh_model = self._models[0]
        crop = cv2.warpAffine(image, matrix, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR)
        inputs, outputs = mesh_model.get_input_details(), mesh_model.get_output_details()
        mesh_model.set_tensor(inputs[0]["index"], (crop[None].astype(np.float32) / 255.0))
        mesh_model.invoke()
        points = mesh_model.get_tensor(outputs[0]["index"]).reshape(478, 3)[:, :2]  # crop pixels
        logit = float(mesh_model.get_tensor(outputs[1]["index"]).ravel()[0])
        inverse = cv2.invertAffineTransform(matrix)
        return (points @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32), float(1 / (1 + np.exp(-logit)))

    def read(self, image: np.ndarray, landmarks: np.ndarray) -> TeacherReading:
        image = np.ascontiguousarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        lms = np.asarray(landmarks, dtype=np.float64)
        if lms.shape != (68, 2) or not np.isfinite(lms).all():
            raise ValueError(f"landmarks must be finite (68, 2), got {lms.shape}")
        eye_line = lms[42:48].mean(axis=0) - lms[36:42].mean(axis=0)
        angle = float(np.arctan2(eye_line[1], eye_line[0]))
        centre, size = _square_roi(lms, angle)
        mesh, _ = self._mesh(image, _crop_matrix(centre, size, angle))
        # Second pass: the crop MediaPipe's tracking path takes from a mesh (see the module docstring).
        eye_line = mesh[RIGHT_EYE_CORNER] - mesh[LEFT_EYE_CORNER]
        angle = float(np.arctan2(eye_line[1], eye_line[0]))
        centre, size = _square_roi(mesh.astype(np.float64), angle)
        mesh, presence = self._mesh(image, _crop_matrix(centre, size, angle))
        blend_model = self._models[1]
        blend_model.set_tensor(
            blend_model.get_input_details()[0]["index"],
            mesh[list(BLENDSHAPE_SUBSET)][None].astype(np.float32),
        )
        blend_model.invoke()
        scores = blend_model.get_tensor(blend_model.get_output_details()[0]["index"]).astype(np.float32)
        eye_distance = float(np.linalg.norm(mesh[EYE_OUTER_CORNERS[1]] - mesh[EYE_OUTER_CORNERS[0]]))
        gap = max(float(np.linalg.norm(mesh[lower] - mesh[upper])) for upper, lower in INNER_LIP_PAIRS)
        return TeacherReading(scores.copy(), presence, mesh, gap / max(eye_distance, 1e-6))
