"""`facskit demo` runs on a fresh install with no arguments and no data beyond what the package ships."""

import cv2

from facskit.cli import main


def test_demo_writes_an_annotated_picture_of_the_bundled_face(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 face(s) found" in out
    picture = cv2.imread(str(tmp_path / "faces_and_au_points.png"))
    assert picture is not None and picture.shape[1] > picture.shape[0]  # frame + aligned crop side by side
