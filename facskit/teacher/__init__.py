"""facskit.teacher: AU pseudo-labels for real, unlabelled faces from MediaPipe's blendshape model.

``facskit teach`` turns real images and videos into a training cache whose AU labels come from the teacher
(:mod:`facskit.teacher.teach`); :mod:`facskit.teacher.blendshapes` runs the models, and
:mod:`facskit.teacher.au_map` maps their 52 coefficients to FACS intensities and says which AUs the teacher
cannot see. Used for training only: analysis never loads the teacher. Sits at the ``data`` layer.
"""

from facskit.teacher.au_map import AU_SOURCES, MASKED_AUS, AUMap, MonotoneMap, load_au_map
from facskit.teacher.blendshapes import BLENDSHAPE_NAMES, BlendshapeTeacher, TeacherReading

__all__ = [
    "AU_SOURCES",
    "BLENDSHAPE_NAMES",
    "MASKED_AUS",
    "AUMap",
    "BlendshapeTeacher",
    "MonotoneMap",
    "TeacherReading",
    "load_au_map",
]
