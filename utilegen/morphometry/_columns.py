"""The one place where every column of `measure`'s table is documented."""

from __future__ import annotations

__all__ = ["COLUMNS", "column_unit", "describe_columns"]

# name -> (dimension, description). dimension: "length", "area", "angle", "ratio", "id",
# "pixel" (pixel coordinates, never calibrated), "bool" or "intensity".
COLUMNS: dict[str, tuple[str, str]] = {
    "image_id": ("id", "Which image the particle comes from (only in `measure_many` tables)."),
    "label": ("id", "The instance's label value in the mask."),
    "centroid_x": ("pixel", ("Mean column of the particle's pixels, in pixels (x to the right), "
                             "so that particles can be found on the image.")),
    "centroid_y": ("pixel", "Mean row of the particle's pixels, in pixels (y downwards)."),
    "area": ("area", "A = number of pixels x pixel_size**2 (ImageJ 'Area')."),
    "equivalent_diameter": ("length", "Diameter of the disk of the same area, sqrt(4 A / pi)."),
    "bbox_width": ("length", ("Width of the axis-aligned bounding box, columns spanned x "
                              "pixel_size (the paper's X size).")),
    "bbox_height": ("length", ("Height of the bounding box, rows spanned x pixel_size "
                               "(the paper's Y size).")),
    "perimeter": ("length", ("Boundary length P. default: length of the sub-pixel outline "
                             "(marching squares at level 0.5, one pass of a 3-point moving "
                             "average), holes not counted. imagej: ImageJ's traced perimeter "
                             "(8-connected outline, straight edges 1, corners sqrt(2)).")),
    "area_convex": ("area", ("Area of the convex hull. default: hull of the sub-pixel outline; "
                             "imagej: hull of the pixel corners (ImageJ's convex hull).")),
    "solidity": ("ratio", "A / area_convex, at most 1 (ImageJ 'Solidity')."),
    "extent": ("ratio", "A / (bbox_width x bbox_height)."),
    "orientation": ("angle", ("Angle of the fitted ellipse's major axis, degrees in [0, 180), "
                              "counter-clockwise from the image x axis as seen on screen "
                              "(ImageJ 'Angle').")),
    "axis_major_length": ("length", ("Major axis of the ellipse with the particle's second "
                                     "moments (pixels as unit squares: variance + 1/12). "
                                     "default: 4 sqrt(lambda_1); imagej: ImageJ 'Major' (ellipse "
                                     "rescaled to the particle's area).")),
    "axis_minor_length": ("length", ("Minor axis of that ellipse, 4 sqrt(lambda_2) "
                                     "(imagej: ImageJ 'Minor').")),
    "feret_diameter_max": ("length", ("Largest caliper width. default: diameter of the convex "
                                      "hull of the sub-pixel outline (lightly smoothed). imagej: "
                                      "largest distance between pixel corners (ImageJ 'Feret').")),
    "feret_diameter_min": ("length", ("Smallest caliper width (rotating calipers over the hull "
                                      "edges). default: width of the hull of pixel centres plus "
                                      "the lattice spacing perpendicular to the edge (the expected "
                                      "distance between the outermost pixel centres and the "
                                      "sampled edge); imagej: ImageJ 'MinFeret'.")),
    "feret_angle": ("angle", ("Angle of the largest caliper chord, degrees in [0, 180), "
                              "counter-clockwise from the x axis (ImageJ 'FeretAngle').")),
    "aspect_ratio": ("ratio", "axis_major_length / axis_minor_length (ImageJ 'AR')."),
    "aspect_ratio_bbox": ("ratio", "bbox_width / bbox_height (the paper's aspect ratio)."),
    "circularity": ("ratio", ("4 pi A / P**2, at most 1 (ImageJ 'Circ.'; the paper calls it "
                              "roundness). 1 for a disk.")),
    "roundness": ("ratio", "4 A / (pi axis_major_length**2) (ImageJ 'Round')."),
    "touches_border": ("bool", ("True when the particle has a pixel on the image border "
                                "(it is probably cut).")),
    "intensity_mean": ("intensity", ("Mean image value over the particle's pixels (only with "
                                     "an image).")),
    "intensity_std": ("intensity", ("Standard deviation (ddof=0) of the image values over the "
                                    "particle's pixels (only with an image).")),
}

SHAPE_COLUMNS = [c for c in COLUMNS if c not in ("image_id", "intensity_mean", "intensity_std")]


def column_unit(column: str, unit: str) -> str:
    """The unit of `column` when lengths are in `unit` ("px" when uncalibrated)."""
    dim = COLUMNS.get(column, ("ratio", ""))[0]
    if dim == "length":
        return unit
    if dim == "area":
        return f"{unit}²"
    if dim == "angle":
        return "deg"
    if dim == "pixel":
        return "px"
    if dim == "intensity":
        return "grey value"
    return ""


def describe_columns() -> str:
    """A plain-text table of all columns: name, unit kind, definition."""
    width = max(map(len, COLUMNS))
    return "\n".join(f"{name:<{width}}  {dim:<9}  {text}" for name, (dim, text) in COLUMNS.items())
