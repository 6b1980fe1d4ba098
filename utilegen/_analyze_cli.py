"""The `utilegen analyze` and `utilegen serve` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ANALYZE_EXAMPLES = """examples:
  utilegen analyze micrographs/ --pixel-size 0.5 --unit nm --out report/
  utilegen analyze 'data/*.tif' --out report/            # pixel size from metadata or scale bar
  utilegen analyze a.png b.png --model my_model/ --pixel-size 1.2 --out report/ --keep-border

exit status: 0 all images analyzed; 3 some files skipped (listed, and in errors.csv);
1 no image could be analyzed; 2 bad arguments or a missing model.
"""

SERVE_EXAMPLES = """examples:
  utilegen serve                          # http://127.0.0.1:8000
  utilegen serve --host 0.0.0.0 --port 8080 --model my_model/ --max-files 50
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _pixel_size(text: str):
    from .io import check_pixel_size

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return check_pixel_size(text, "--pixel-size")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_cli(subparsers) -> None:
    """Register `analyze` and `serve` on the `utilegen` command's subparsers."""
    p = subparsers.add_parser(
        "analyze", help="segment micrographs and measure every particle (PSD, shapes, report)",
        description="Segment micrographs, measure every particle and write a report folder: "
                    "particles.csv, summary.csv, psd.png (histogram, KDE, log-normal fit), "
                    "overlays/<image>.png and labels/<image>.tif.",
        epilog=ANALYZE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files, folders or glob patterns (TIFF, PNG, JPEG, BMP)")
    p.add_argument("--out", type=Path, required=True,
                   help="report folder (created; must be empty unless --overwrite)")
    p.add_argument("--pixel-size", type=_pixel_size, default="auto",
                   help="size of one pixel in --unit, for every image; default 'auto': each "
                        "file's metadata, else its scale bar, else px (the report says which)")
    p.add_argument("--unit", default="nm", help="unit of --pixel-size (default nm)")
    p.add_argument("--model", type=Path, default=None,
                   help="segmentation model folder (from StarDist.save); default: the model "
                        "shipped with utilegen")
    p.add_argument("--classifier", type=Path, default=None,
                   help="shape classifier folder (from ShapeClassifier.save), or 'rules' for "
                        "the morphometry rules alone; default: the shipped per-particle "
                        "classifier")
    p.add_argument("--keep-border", action="store_true",
                   help="also measure particles cut by the image border")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the segmenter over the 8 flips and "
                        "quarter turns of each image (better outlines, about 4.5x slower)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out folder, replacing files of the same name")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-isolate", action="store_true",
                   help="analyze in this process instead of a worker process (by default a "
                        "native crash on one image fails that image alone; this saves the "
                        "worker's few seconds of start-up)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="analyze on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs "
                        "utilegen[distributed]; the images must be readable by the workers)")
    p.set_defaults(func=_analyze)

    s = subparsers.add_parser(
        "serve", help="run the web app: upload micrographs, get overlays, PSD and CSV",
        description="Start utilegen's web app: upload micrographs in a browser and get the "
                    "particle overlays, tables, the size distribution and CSV downloads.",
        epilog=SERVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--model", type=Path, default=None,
                   help="segmentation model folder; default: the model shipped with utilegen")
    s.add_argument("--classifier", type=Path, default=None,
                   help="shape classifier folder, or 'rules'; default: the shipped one")
    s.add_argument("--max-files", type=_positive_int, default=20,
                   help="most images per upload (default 20)")
    s.add_argument("--max-mb", type=_positive_float, default=25.0,
                   help="largest image file in MB (default 25)")
    s.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="host name the server answers to (repeatable; protects against DNS "
                        "rebinding). Default: localhost, plus --host when it names one address; "
                        "any name when --host is 0.0.0.0 or ::")
    s.set_defaults(func=_serve)


def _analyze(args) -> int:
    from .pipeline import analyze

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        # Checked before the (long) analysis, not only when saving.
        raise FileExistsError(f"{out} is not empty; choose a new folder or pass --overwrite")
    segmenter = args.model
    if args.tta:
        from .pipeline import load_segmenter

        segmenter = load_segmenter(args.model)
        if not hasattr(segmenter, "predict_tta"):
            raise ValueError("--tta needs a StarDist segmenter")
        segmenter.predict_tta = True
    kwargs = {"segmenter": segmenter, "classifier": args.classifier,
              "pixel_size": args.pixel_size, "unit": args.unit,
              "exclude_border": not args.keep_border, "progress": not args.no_progress}
    if args.scheduler:
        from .cli import dask_client

        with dask_client(args.scheduler) as client:
            report = analyze(args.images, client=client, **kwargs)
    else:
        report = analyze(args.images, isolate=not args.no_isolate, **kwargs)
    for name, message in report.errors:
        print(f"skipped {name}: {message}", file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not report.ids:
        print("utilegen analyze: error: no image could be analyzed", file=sys.stderr)
        return 1
    report.save(out, overwrite=args.overwrite)
    row = report.summary.iloc[0]
    unit = row["unit"]
    mean = row.get("equivalent_diameter_mean")
    import math

    low, high = (row.get(f"equivalent_diameter_d50_ci_{end}") for end in ("low", "high"))
    ci = (f" (95 % CI {low:.3g}-{high:.3g})" if low is not None and high is not None
          and math.isfinite(low) and math.isfinite(high) else "")
    size = (f"; equivalent diameter mean {mean:.3g} {unit}, "
            f"D50 {row['equivalent_diameter_d50']:.3g} {unit}{ci}") if row["particles"] else ""
    print(f"{len(report.particles)} particles in {len(report.ids)} image(s){size}")
    held = report.settings.get("segmenter_heldout")
    if held:
        err = held.get("d50_relative_error")
        print(f"segmenter on its held-out annotated images: F1@0.5 {held['f1_50']:.3f}, "
              f"D50 error {'n/a' if err is None else f'{err:+.1%}'} "
              f"({held['n_true']} annotated particles); sizes here carry at least that error")
        from .segment._adapt import FEW_HELDOUT

        if held["n_true"] is not None and held["n_true"] < FEW_HELDOUT:
            print(f"  only {held['n_true']} held-out particles: a rough figure; annotate "
                  "more images to measure the segmenter's error")
    print(f"report written to {out}/ (particles.csv, summary.csv, psd.png, overlays/, labels/)")
    return 0 if not report.errors else 3


def _serve(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ValueError("the web app needs the web extra: pip install 'utilegen[web]'") from None
    from .app import create_app
    from .pipeline import load_classifier, load_segmenter

    segmenter = load_segmenter(args.model)
    classifier = load_classifier(args.classifier)
    hosts = args.allowed_host
    if not hosts:
        hosts = ["*"] if args.host in ("0.0.0.0", "::") else \
            ["localhost", "127.0.0.1", "::1", "[::1]", args.host]
    app = create_app(segmenter=segmenter,
                     classifier=classifier if classifier is not None else False,
                     max_files=args.max_files,
                     max_bytes=int(args.max_mb * 1024 * 1024), allowed_hosts=hosts)
    print(f"utilegen web app on http://{args.host}:{args.port}/ (Ctrl+C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
