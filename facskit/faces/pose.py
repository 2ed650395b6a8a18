"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks: PnP against a generic 3D mean face.

The camera is unknown, so it is guessed: focal length = image width in pixels (a ~53 degree horizontal
field of view, typical of webcams and phones), principal point at the image centre, no lens distortion.
The angles are then good to a few degrees for a real face; the distance (translation) is not reported.

Sign conventions (camera looking at the subject; x right, y down in the image):
  yaw   > 0: the face turns toward the image's left (the subject's own right), nose moves left in the image.
  pitch > 0: the face tilts up (chin up), nose moves up in the image.
  roll  > 0: the face tilts clockwise in the image (the head top moves toward the image's right).
They are the Tait-Bryan angles of R = Rz(roll) @ Ry(yaw) @ Rx(-pitch), R mapping model to camera axes.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

# 68-point 3D mean face in iBUG-68 order, in millimetre-like units, axes as OpenCV's camera: x to the
# image's right, y down, z away from the camera (the nose tip, point 30, is nearest: z = -37).
# Source: the mean shape of the 3D point distribution model of OpenFace (Baltrusaitis et al., "Constrained
# Local Neural Fields", ICCV-W 2013; "OpenFace 2.0", FG 2018), fitted on in-the-wild 68-point annotations
# and widely redistributed for PnP head pose (e.g. as the "landmarks_68_3D" table of DeepFaceLab and the
# model file of yinguobing/head-pose-estimation).
MEAN_FACE_3D = np.array(
    [
        [-73.393523, -29.801432, 47.667532],
        [-72.775014, -10.949766, 45.909403],
        [-70.533638, 7.929818, 44.842580],
        [-66.850058, 26.074280, 43.141114],
        [-59.790187, 42.564390, 38.635298],
        [-48.368973, 56.481080, 30.750622],
        [-34.121101, 67.246992, 18.456453],
        [-17.875411, 75.056892, 3.609035],
        [0.098749, 77.061286, -0.881698],
        [17.477031, 74.758448, 5.181201],
        [32.648966, 66.929021, 19.176563],
        [46.372358, 56.311389, 30.770570],
        [57.343480, 42.419126, 37.628629],
        [64.388482, 25.455880, 40.886309],
        [68.212038, 6.990805, 42.281449],
        [70.486405, -11.666193, 44.142567],
        [71.375822, -30.365191, 47.140426],
        [-61.119406, -49.361602, 14.254422],
        [-51.287588, -58.769795, 7.268147],
        [-37.804800, -61.996155, 0.442051],
        [-24.022754, -61.033399, -6.606501],
        [-11.635713, -56.686759, -11.967398],
        [12.056636, -57.391033, -12.051204],
        [25.106256, -61.902186, -7.315098],
        [38.338588, -62.777713, -1.022953],
        [51.191007, -59.302347, 5.349435],
        [60.053851, -50.190255, 11.615746],
        [0.653940, -42.193790, -13.380835],
        [0.804809, -30.993721, -21.150853],
        [0.992204, -19.944596, -29.284036],
        [1.226783, -8.414541, -36.948060],
        [-14.772472, 2.598255, -20.132003],
        [-7.180239, 4.751589, -23.536684],
        [0.555920, 6.562900, -25.944448],
        [8.272499, 4.661005, -23.695741],
        [15.214351, 2.643046, -20.858157],
        [-46.047290, -37.471411, 7.037989],
        [-37.674688, -42.730510, 3.021217],
        [-27.883856, -42.711517, 1.353629],
        [-19.648268, -36.754742, -0.111088],
        [-28.272965, -35.134493, -0.147273],
        [-38.082418, -34.919043, 1.476612],
        [19.265868, -37.032306, -0.665746],
        [27.894191, -43.342445, 0.247660],
        [37.437529, -43.110822, 1.696435],
        [45.170805, -38.086515, 4.894163],
        [38.196454, -35.532024, 0.282961],
        [28.764989, -35.484289, -1.172675],
        [-28.916267, 28.612716, -2.240310],
        [-17.533194, 22.172187, -15.934335],
        [-6.684590, 19.029051, -22.611355],
        [0.381001, 20.721118, -23.748437],
        [8.375443, 19.035460, -22.721995],
        [18.876618, 22.394109, -15.610679],
        [28.794412, 28.079924, -3.217393],
        [19.057574, 36.298248, -14.987997],
        [8.956375, 39.634575, -22.554245],
        [0.381549, 40.395647, -23.591626],
        [-7.428895, 39.836405, -22.406106],
        [-18.160634, 36.677899, -15.121907],
        [-24.377490, 28.677771, -4.785684],
        [-6.897633, 25.475976, -20.893742],
        [0.340663, 26.014269, -22.220479],
        [8.444722, 25.326198, -21.025520],
        [24.474473, 28.323008, -5.712776],
        [8.449166, 30.596216, -20.671489],
        [0.205322, 31.408738, -21.903670],
        [-7.198266, 30.844876, -20.328022],
    ],
    dtype=np.float64,
)  # (68, 3)


class HeadPose(NamedTuple):
    """Head rotation in degrees; see the module docstring for the sign conventions."""

    yaw: float
    pitch: float
    roll: float


def camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """The guessed pinhole camera for an image of (width, height) pixels: f = width, centre = middle."""
    width, height = image_size
    return np.array([[width, 0.0, width / 2], [0.0, width, height / 2], [0.0, 0.0, 1.0]])


def rotation_from_angles(pose: HeadPose) -> np.ndarray:
    """(3, 3) rotation from model to camera axes for `pose` (inverse of `angles_from_rotation`)."""
    yaw, pitch, roll = np.radians([pose.yaw, pose.pitch, pose.roll])
    cx, sx = np.cos(-pitch), np.sin(-pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cz, sz = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> HeadPose:
    """Decompose R = Rz(roll) Ry(yaw) Rx(-pitch) into degrees."""
    yaw = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    pitch = -np.arctan2(rotation[2, 1], rotation[2, 2])
    roll = np.arctan2(rotation[1, 0], rotation[0, 0])
    return HeadPose(*(float(np.degrees(angle)) for angle in (yaw, pitch, roll)))


def project_mean_face(pose: HeadPose, image_size: tuple[int, int], distance: float = 600.0) -> np.ndarray:
    """Landmarks (68, 2) of the mean face rotated by `pose`, `distance` model units in front of the
    guessed camera, centred in the image: synthetic input for tests and sanity checks."""
    rvec, _ = cv2.Rodrigues(rotation_from_angles(pose))
    tvec = np.array([0.0, 0.0, distance])
    points, _ = cv2.projectPoints(MEAN_FACE_3D, rvec, tvec, camera_matrix(image_size), None)
    return points.reshape(68, 2).astype(np.float32)


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Yaw, pitch and roll in degrees of a face with (68, 2) landmarks in an image of (width, height) px.

    solvePnP (iterative Levenberg-Marquardt) starts from a frontal pose 10 face widths away, which keeps it
    out of the mirrored solution a planar-looking face can otherwise fall into. NaNs if it fails.
    """
    points = np.ascontiguousarray(landmarks, dtype=np.float64).reshape(68, 1, 2)
    camera = camera_matrix(image_size)
    face_width = float(np.ptp(points[:, 0, 0])) or 1.0
    # Initial distance from similar triangles: model face width (~145 units) maps to face_width pixels.
    distance = camera[0, 0] * 145.0 / face_width
    centre = points[:, 0, :].mean(axis=0)
    tvec = np.array(
        [
            (centre[0] - camera[0, 2]) * distance / camera[0, 0],
            (centre[1] - camera[1, 2]) * distance / camera[1, 1],
            distance,
        ]
    ).reshape(3, 1)
    rvec = np.zeros((3, 1))
    ok, rvec, _ = cv2.solvePnP(
        MEAN_FACE_3D, points, camera, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return HeadPose(float("nan"), float("nan"), float("nan"))
    rotation, _ = cv2.Rodrigues(rvec)
    return angles_from_rotation(rotation)
