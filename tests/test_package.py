"""Package-level promises: light import, CLI help."""

import subprocess
import sys


def test_import_is_light():
    # torch, timm and matplotlib load only when the parts that need them are used.
    code = ("import sys, utilegen; utilegen.InstanceMask([[0, 1]]); "
            "print(sorted(m for m in ('torch', 'timm', 'matplotlib', 'pandas', 'scipy.ndimage') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "utilegen", "--help"], capture_output=True,
                         text=True, check=True)
    assert "generate" in out.stdout and "examples:" in out.stdout
    out = subprocess.run([sys.executable, "-m", "utilegen", "generate", "--help"],
                         capture_output=True, text=True, check=True)
    for flag in ("--particles", "--no-overlap", "--scale", "--salt-pepper", "--blur",
                 "--background", "--size", "--seed", "--workers", "--n"):
        assert flag in out.stdout


def test_cli_sample_writes_a_calibrated_pair(tmp_path):
    from utilegen.cli import main
    from utilegen.io import read_image, read_mask, read_pixel_size

    assert main(["sample", "--out", str(tmp_path), "--size", "128", "--pixel-size", "1.5"]) == 0
    image = read_image(tmp_path / "images" / "sample.tif")
    mask = read_mask(tmp_path / "masks" / "sample.tif")
    assert image.shape == mask.shape == (128, 128) and mask.count > 0
    assert read_pixel_size(tmp_path / "images" / "sample.tif") == (1.5, "nm")
    assert main(["sample", "--out", str(tmp_path)]) == 2  # never overwrites
