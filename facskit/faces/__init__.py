"""facskit.faces: detect faces, fit 68 landmarks, track them through videos, estimate head pose."""

from facskit.faces.detect import DetectedFace, FaceDetector, to_gray
from facskit.faces.geometry import Box, detector_box_from_landmarks, iou
from facskit.faces.landmarks import LandmarkPredictor, landmarks_plausible
from facskit.faces.models import model_file
from facskit.faces.pose import MEAN_FACE_3D, HeadPose, head_pose, project_mean_face
from facskit.faces.schema import FACE_COLUMNS, NO_FACE_ID, face_rows
from facskit.faces.still import faces_in_image
from facskit.faces.stream import FaceFrontEnd
from facskit.faces.track import DEFAULT_DETECT_EVERY, FaceTracker, TrackedFace

__all__ = [
    "DEFAULT_DETECT_EVERY",
    "FACE_COLUMNS",
    "MEAN_FACE_3D",
    "NO_FACE_ID",
    "Box",
    "DetectedFace",
    "FaceDetector",
    "FaceFrontEnd",
    "FaceTracker",
    "HeadPose",
    "LandmarkPredictor",
    "TrackedFace",
    "detector_box_from_landmarks",
    "face_rows",
    "faces_in_image",
    "head_pose",
    "iou",
    "landmarks_plausible",
    "model_file",
    "project_mean_face",
    "to_gray",
]
