"""`medmae export` on checkpoints built here."""

from export_helpers import UNETR_FIT, write_checkpoint
from medmae.cli.main import main


def test_export_cli_writes_and_verifies(tmp_path, capsys):
    ckpt, _ = write_checkpoint(tmp_path / "latest.pt")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "enc")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "enc" / "encoder.pt").is_file() and (tmp_path / "enc" / "encoder.json").is_file()
    assert "step 123" in out and "grid (2, 2, 2)" in out
    assert "load into ViTEncoder3D(img_size=(32, 32, 32)): OK" in out
    assert "load into MONAI UNETR.vit: OK" in out and "missing     0" in out and "unexpected  0" in out
    gap = float(out.split("max |diff| = ")[1].split()[0])
    assert gap < 1e-4


def test_export_cli_skips_unetr_for_patch_8(tmp_path, capsys):
    ckpt, _ = write_checkpoint(tmp_path / "c.pt", {**UNETR_FIT, "depth": 2, "patch_size": 8})
    assert main(["export", str(ckpt), "--out", str(tmp_path / "enc")]) == 0
    assert "UNETR check skipped: MONAI UNETR fixes patch 16" in capsys.readouterr().out


def test_export_cli_bad_checkpoint_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "broken.pt"), "--out", str(tmp_path / "enc")]) == 2
    err = capsys.readouterr().err
    assert "medmae export: error:" in err and "broken.pt" in err and "Traceback" not in err
    assert not (tmp_path / "enc").exists()
