"""`facskit demo` runs on a fresh install with no arguments and no data beyond what the package ships."""

import cv2
import pandas as pd

from facskit.aus import au_column
from facskit.cli import main
from facskit.synth import SYNTH_AUS


def test_demo_runs_the_whole_job_on_the_bundled_samples(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 face(s) found" in out
    picture = cv2.imread(str(tmp_path / "faces_and_au_points.png"))
    assert picture is not None and picture.shape[1] > picture.shape[0]  # frame + aligned crop side by side

    frames = pd.read_csv(tmp_path / "analysis" / "sample_clip.csv")
    assert len(frames) >= 144 and frames.frame.nunique() == 144  # every frame of the clip has a row
    assert frames.face_detected.mean() > 0.95
    columns = [au_column(code) for code in SYNTH_AUS]
    assert set(columns) <= set(frames.columns)  # the default model covers all 17 generated AUs, AU45 too
    values = frames.loc[frames.face_detected, columns].to_numpy()
    assert (values >= 0).all() and (values <= 5).all()
    for written in ("analysis/summary.csv", "analysis/sample_clip.overlay.mp4", "report.html"):
        assert (tmp_path / written).stat().st_size > 0, written
    assert any((tmp_path / "plots").glob("*.png"))
    assert str(tmp_path / "report.html") in out
