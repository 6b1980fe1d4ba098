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
    out = subprocess.run([sys.executable, "-m", "utilegen", "--help"], capture_output=True, text=True,
                         check=True)
    assert "generate" in out.stdout and "examples:" in out.stdout
    out = subprocess.run([sys.executable, "-m", "utilegen", "generate", "--help"], capture_output=True,
                         text=True, check=True)
    for flag in ("--particles", "--no-overlap", "--scale", "--salt-pepper", "--blur", "--background",
                 "--size", "--seed", "--workers", "--n"):
        assert flag in out.stdout
