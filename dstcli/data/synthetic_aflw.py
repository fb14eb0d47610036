"""A synthetic AFLW in the real layout, for tests, the demo and machines without AFLW.

`write_synthetic_aflw(root, n_faces, seed)` writes

    root/data/aflw.sqlite                 every table and column of the real database
    root/data/flickr/{0,2,3}/imageNNNNN.jpg

and `dst prepare aflw` reads it exactly as it reads the real set, so every synthetic run also
tests the reader.

Each face is a 3D template of the 21 AFLW landmarks (x to the image right, y up, z toward the
camera, in units of half a face width) rotated by a random roll, pitch and yaw and projected
orthographically. A landmark whose surface normal turns away from the camera is left out of
FeatureCoords, as AFLW leaves out what the annotators could not see. Gender shows through hair
length, jaw width, brow thickness, lip colour and stubble, each drawn from overlapping
distributions; spectacles are drawn frames, some thin and pale; and a few labels are flipped, so
both tasks are learnable and neither is trivial. Backgrounds, skin tone, hair colour, face scale
and lighting vary; some faces lack their sex (''), some poses are undefined (-2*pi), some images
hold two faces. It does not model occlusion by objects, expressions, blur or real textures.

The same seed gives the same bytes: every image draws from its own stream of the seed.
"""

from __future__ import annotations

import io
import math
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UNDEFINED_ANGLE = -2 * math.pi
FIRST_FACE_ID = 39341  # where AFLW's face ids start
SUBFOLDERS = ("0", "2", "3")

# (feature_id, code, descr); "Left" is the image's left, the subject's right.
FEATURES = (
    (1, "LBLC", "LeftBrowLeftCorner"),
    (2, "LBC", "LeftBrowCenter"),
    (3, "LBRC", "LeftBrowRightCorner"),
    (4, "RBLC", "RightBrowLeftCorner"),
    (5, "RBC", "RightBrowCenter"),
    (6, "RBRC", "RightBrowRightCorner"),
    (7, "LELC", "LeftEyeLeftCorner"),
    (8, "LEC", "LeftEyeCenter"),
    (9, "LERC", "LeftEyeRightCorner"),
    (10, "RELC", "RightEyeLeftCorner"),
    (11, "REC", "RightEyeCenter"),
    (12, "RERC", "RightEyeRightCorner"),
    (13, "LE", "LeftEar"),
    (14, "LN", "NoseLeft"),
    (15, "NC", "NoseCenter"),
    (16, "RN", "NoseRight"),
    (17, "RE", "RightEar"),
    (18, "MLC", "MouthLeftCorner"),
    (19, "MC", "MouthCenter"),
    (20, "MRC", "MouthRightCorner"),
    (21, "CC", "ChinCenter"),
)

# The mean 3D face, row j = feature_id j + 1.
TEMPLATE = np.array([
    [-0.62, 0.42, 0.55], [-0.40, 0.50, 0.72], [-0.15, 0.44, 0.80],
    [0.15, 0.44, 0.80], [0.40, 0.50, 0.72], [0.62, 0.42, 0.55],
    [-0.55, 0.25, 0.60], [-0.38, 0.25, 0.68], [-0.20, 0.25, 0.70],
    [0.20, 0.25, 0.70], [0.38, 0.25, 0.68], [0.55, 0.25, 0.60],
    [-0.95, 0.05, 0.00],
    [-0.18, -0.20, 0.78], [0.00, -0.15, 1.00], [0.18, -0.20, 0.78],
    [0.95, 0.05, 0.00],
    [-0.30, -0.50, 0.72], [0.00, -0.50, 0.82], [0.30, -0.50, 0.72],
    [0.00, -0.92, 0.70],
])
EARS = (12, 16)  # rows of LeftEar, RightEar

# Outward normals: from a point behind the face's centre, except the ears, which face sideways.
_normals = TEMPLATE - np.array([0.0, 0.05, -0.35])
_normals[12] = [-1.0, 0.0, 0.3]
_normals[16] = [1.0, 0.0, 0.3]
NORMALS = _normals / np.linalg.norm(_normals, axis=1, keepdims=True)
# A point is seen while its rotated normal's z (toward the camera) exceeds this; an ear stays
# visible a little past edge-on, since it stands out from the head.
SEEN_Z = np.where(np.isin(np.arange(21), EARS), -0.05, 0.2)

# The skull as an ellipsoid (centre, semi-axes), drawn in the hair colour.
HEAD_CENTRE = np.array([0.0, 0.15, -0.15])
HEAD_AXES = np.array([1.0, 1.22, 1.05])


@dataclass
class SyntheticFace:
    """One drawn face, as the round-trip test needs it."""

    face_id: int
    filepath: str  # relative to data/flickr, e.g. "3/image00012.jpg"
    rect: tuple[int, int, int, int]  # FaceRect x, y, w, h
    landmarks: np.ndarray  # (21, 2) where each landmark was drawn, in image pixels
    visible: np.ndarray  # (21,) bool: written to FeatureCoords
    sex: str  # as written: 'm', 'f' or ''
    glasses: int  # as written: 0 or 1
    pose: tuple[float, float, float]  # roll, pitch, yaw as written (-2*pi where undefined)


@dataclass
class SyntheticAFLW:
    root: Path
    sqlite: Path
    faces: list[SyntheticFace]


def rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(roll) Rx(pitch) Ry(yaw): yaw > 0 turns the face to the image right, pitch > 0
    tilts it down, roll > 0 turns it counter-clockwise on the screen."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return rz @ rx @ ry


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Convex hull of (n, 2) points (Andrew's monotone chain), as a polygon."""
    pts = sorted(set(map(tuple, np.round(points, 3).tolist())))
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


@dataclass
class _Look:
    """Everything drawn about one face: its true attributes and their visible cues."""

    female: bool
    glasses: bool
    roll: float
    pitch: float
    yaw: float
    s: float  # pixels per template unit
    cx: float
    cy: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    jaw: float
    brow: float
    lips: tuple[int, int, int]
    stubble: bool
    frame: tuple[int, int, int]
    frame_width: int
    tinted: bool  # sunglasses: dark lenses
    ears_covered: bool


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))


def _random_look(rng: np.random.Generator, s: float, cx: float, cy: float) -> _Look:
    female = bool(rng.random() < 0.5)
    glasses = bool(rng.random() < 0.25)
    tone = rng.random()
    skin = _mix((238, 204, 180), (92, 60, 44), tone)
    skin = tuple(int(np.clip(c + rng.normal(0, 8), 0, 255)) for c in skin)
    hair = [(25, 20, 18), (70, 45, 30), (120, 85, 50), (200, 170, 110), (150, 150, 150),
            (140, 60, 30)][rng.choice(6, p=[0.35, 0.25, 0.15, 0.12, 0.08, 0.05])]
    long_hair = bool(rng.random() < (0.85 if female else 0.12))
    lipstick = female and rng.random() < 0.55
    lips = (170, 40, 60) if lipstick else _shade(skin, 0.78)
    pale = rng.random() < 0.3
    return _Look(
        female=female,
        glasses=glasses,
        roll=float(np.clip(rng.normal(0, 0.18), -0.6, 0.6)),
        pitch=float(np.clip(rng.normal(0, 0.2), -0.6, 0.6)),
        yaw=float(np.clip(rng.normal(0, 0.55), -1.45, 1.45)),
        s=s,
        cx=cx,
        cy=cy,
        skin=skin,
        hair=hair,
        long_hair=long_hair,
        jaw=float(rng.normal(0.92 if female else 1.1, 0.06)),
        brow=float(max(0.02, rng.normal(0.05 if female else 0.09, 0.018))),
        lips=lips,
        stubble=(not female) and rng.random() < 0.25,
        frame=(170, 170, 175) if pale else tuple(int(v) for v in rng.integers(0, 70, 3)),
        frame_width=max(1, int(round(s * (0.045 if pale else rng.uniform(0.07, 0.12))))),
        tinted=rng.random() < 0.2,
        ears_covered=long_hair and rng.random() < 0.7,
    )


def _draw_face(draw, look: _Look) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face; return where its 21 landmarks lie (pixels) and which are seen."""
    r = rotation(look.roll, look.pitch, look.yaw)
    s, cx, cy = look.s, look.cx, look.cy

    def project(points) -> np.ndarray:
        q = np.asarray(points, dtype=np.float64) @ r.T
        return np.stack([cx + s * q[..., 0], cy - s * q[..., 1]], axis=-1)

    def poly(points) -> list[tuple[float, float]]:
        return [tuple(p) for p in project(points).tolist()]

    landmarks = project(TEMPLATE)
    seen = (NORMALS @ r.T)[:, 2] > SEEN_Z
    if look.ears_covered:
        seen[list(EARS)] = False

    # The skull's outline: the ellipse an orthographic camera sees of the rotated ellipsoid
    # (the Schur complement of its quadric on the depth axis).
    m = r @ np.diag(1.0 / HEAD_AXES**2) @ r.T
    q2 = m[:2, :2] - np.outer(m[:2, 2], m[2, :2]) / m[2, 2]
    vals, vecs = np.linalg.eigh(q2)
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = vecs @ np.stack([np.cos(t) / np.sqrt(vals[0]), np.sin(t) / np.sqrt(vals[1])])
    centre = r @ HEAD_CENTRE
    skull = np.stack([cx + s * (centre[0] + ring[0]), cy - s * (centre[1] + ring[1])], axis=1)

    if look.long_hair:
        top = skull[:, 1].min()
        left, right = skull[:, 0].min() - 0.1 * s, skull[:, 0].max() + 0.1 * s
        bottom = cy + s * (1.5 + 0.3 * look.jaw)
        draw.polygon([(left, top + 0.9 * s), (right, top + 0.9 * s), (right + 0.15 * s, bottom),
                      (left - 0.15 * s, bottom)], fill=look.hair)
    draw.polygon(poly([[-0.42, -0.5, -0.2], [0.42, -0.5, -0.2], [0.46, -2.2, -0.2],
                       [-0.46, -2.2, -0.2]]), fill=_shade(look.skin, 0.85))
    draw.polygon([tuple(p) for p in skull.tolist()], fill=look.hair)

    jw = look.jaw
    xs = np.linspace(-0.62, 0.62, 7)
    mask3d = np.concatenate([
        np.stack([xs, 0.78 - 0.25 * xs**2, 0.62 - 0.3 * xs**2], axis=1),  # hairline
        [[-0.86, 0.42, 0.25], [0.86, 0.42, 0.25]],  # temples
        [[-0.88 * jw, -0.1, 0.25], [0.88 * jw, -0.1, 0.25]],  # cheeks
        [[-0.72 * jw, -0.62, 0.25], [0.72 * jw, -0.62, 0.25]],  # jaw corners
        [[-0.32, -0.93, 0.55], [0.32, -0.93, 0.55], [0.0, -0.98, 0.68]],  # chin
        np.delete(TEMPLATE, EARS, axis=0),  # so a profile keeps its nose and far eye
    ])
    draw.polygon(_hull(project(mask3d)), fill=look.skin)

    for ear in EARS:
        if seen[ear]:
            x, y = landmarks[ear]
            draw.ellipse([x - 0.12 * s, y - 0.22 * s, x + 0.12 * s, y + 0.22 * s],
                         fill=_shade(look.skin, 0.9), outline=_shade(look.skin, 0.7))

    if look.stubble:
        beard = _hull(project([[-0.7 * jw, -0.45, 0.35], [0.7 * jw, -0.45, 0.35],
                               [-0.72 * jw, -0.62, 0.25], [0.72 * jw, -0.62, 0.25],
                               [-0.32, -0.93, 0.55], [0.32, -0.93, 0.55], [0.0, -0.98, 0.68]]))
        draw.polygon(beard, fill=_mix(look.skin, look.hair, 0.45))

    width = max(1, int(round(look.brow * s)))
    for brow in ((0, 1, 2), (3, 4, 5)):
        if seen[brow[1]]:
            draw.line([tuple(landmarks[j]) for j in brow], fill=_shade(look.hair, 0.8),
                      width=width)

    iris = max(1.0, 0.055 * s)
    for outer, centre_j, inner in ((6, 7, 8), (9, 10, 11)):
        if not seen[centre_j]:
            continue
        c3 = TEMPLATE[centre_j]
        lid = poly([TEMPLATE[outer], c3 + [0, 0.07, 0.01], TEMPLATE[inner], c3 - [0, 0.05, 0]])
        draw.polygon(lid, fill=(235, 235, 230))
        x, y = landmarks[centre_j]
        draw.ellipse([x - iris, y - iris, x + iris, y + iris], fill=(40, 30, 25))

    nose = _shade(look.skin, 0.72)
    draw.line(poly([[0.0, 0.22, 0.85], TEMPLATE[14]]), fill=nose, width=max(1, round(0.04 * s)))
    for j in (13, 15):
        if seen[j]:
            x, y = landmarks[j]
            d = max(1.0, 0.04 * s)
            draw.ellipse([x - d, y - d, x + d, y + d], fill=_shade(look.skin, 0.5))

    if seen[18]:
        draw.polygon(poly([TEMPLATE[17], [0.0, -0.46, 0.84], TEMPLATE[19], [0.0, -0.58, 0.8]]),
                     fill=look.lips)
        draw.line([tuple(landmarks[j]) for j in (17, 18, 19)], fill=_shade(look.lips, 0.5),
                  width=max(1, round(0.02 * s)))

    if look.glasses:
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        rims = {}
        for side, centre_j in ((-1, 7), (1, 10)):
            c3 = TEMPLATE[centre_j] + [0, 0, 0.1]
            rim = c3 + np.stack([0.22 * np.cos(t), 0.17 * np.sin(t), 0 * t], axis=1)
            rims[side] = project(rim)
            if seen[centre_j]:
                pts = [tuple(p) for p in rims[side].tolist()]
                if look.tinted:
                    draw.polygon(pts, fill=_shade(look.frame, 0.5))
                draw.line(pts + [pts[0]], fill=look.frame, width=look.frame_width)
        if seen[7] and seen[10]:
            draw.line([tuple(rims[-1][0]), tuple(rims[1][8])], fill=look.frame,
                      width=look.frame_width)
        for side, ear, outer in ((-1, 12, 8), (1, 16, 0)):
            if (NORMALS[ear] @ r.T)[2] > -0.2:
                draw.line([tuple(rims[side][outer]), tuple(landmarks[ear])], fill=look.frame,
                          width=look.frame_width)

    inside = ((landmarks >= 0).all(axis=1))  # the importer drops coordinates <= 0
    return landmarks, seen & inside


def _background(rng: np.random.Generator, width: int, height: int):
    from PIL import Image, ImageDraw

    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, 2 * np.pi)
    xs, ys = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    t = (np.cos(angle) * xs + np.sin(angle) * ys)
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    pixels = a * (1 - t[..., None]) + b * t[..., None]  # (H, W, 3)
    pixels += rng.normal(0, 6, (height, width, 1))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 8)):
        x0, x1 = np.sort(rng.uniform(-0.1, 1.1, 2)) * width
        y0, y1 = np.sort(rng.uniform(-0.1, 1.1, 2)) * height
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
    return img


def _light(rng: np.random.Generator, img) -> np.ndarray:
    """A brightness ramp across the picture and a slight colour cast: (H, W, 3) uint8."""
    pixels = np.asarray(img, dtype=np.float32)
    h, w, _ = pixels.shape
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    gain = rng.uniform(0.65, 1.2)
    ramp = gain + gx * np.linspace(-0.5, 0.5, w)[None, :] + gy * np.linspace(-0.5, 0.5, h)[:, None]
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    return np.clip(pixels * ramp[..., None] * cast, 0, 255).astype(np.uint8)


def _ellipse_row(look: _Look) -> tuple[float, float, float, float, float]:
    """FaceEllipse x, y, ra, rb, theta: an ellipse around the face, from its skull outline."""
    ra, rb = 1.2 * look.s, 0.95 * look.s * (0.6 + 0.4 * abs(math.cos(look.yaw)))
    return look.cx, look.cy, ra, rb, look.roll + math.pi / 2


def write_synthetic_aflw(
    root: Path,
    n_faces: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticAFLW:
    """Write `n_faces` synthetic faces in the AFLW layout under `root`; return what was drawn.

    `root/data` must not exist yet (the caller decides what to replace).
    """
    from PIL import Image, ImageDraw

    if n_faces < 1:
        raise ValueError("n_faces must be at least 1")
    root = Path(root)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=False)
    for sub in SUBFOLDERS:
        (data / "flickr" / sub).mkdir(parents=True)

    faces: list[SyntheticFace] = []
    images: list[tuple] = []
    meta, pose_rows, rects, ellipses, coords, cam = [], [], [], [], [], []
    face_id = FIRST_FACE_ID
    image_no = 0
    while len(faces) < n_faces:
        image_no += 1
        rng = np.random.default_rng([seed, image_no])
        two = n_faces - len(faces) >= 2 and rng.random() < 0.1
        height = int(rng.integers(190, 300))
        width = int(height * rng.uniform(1.7, 2.0)) if two else int(rng.integers(190, 300))
        img = _background(rng, width, height)
        draw = ImageDraw.Draw(img)
        file_id = f"image{image_no:05d}.jpg"
        filepath = f"{SUBFOLDERS[rng.integers(len(SUBFOLDERS))]}/{file_id}"

        slots = [(0, width // 2), (width // 2, width)] if two else [(0, width)]
        for x_lo, x_hi in slots:
            s = rng.uniform(0.15, 0.2) * height if two else rng.uniform(0.16, 0.24) * min(
                width, height)
            cx = rng.uniform(x_lo + 1.3 * s, x_hi - 1.3 * s)
            cy = rng.uniform(1.5 * s, height - 1.4 * s)
            look = _random_look(rng, s, cx, cy)
            landmarks, visible = _draw_face(draw, look)

            # The annotation, with the mistakes and gaps of a real one.
            sex = ("f" if look.female else "m")
            if rng.random() < 0.04:
                sex = "m" if sex == "f" else "f"
            if rng.random() < 0.03:
                sex = ""
            glasses = int(look.glasses != (rng.random() < 0.03))
            angles = [look.roll, look.pitch, look.yaw]
            u = rng.random()
            if u < 0.03:
                angles = [UNDEFINED_ANGLE] * 3
            elif u < 0.04:
                angles[rng.integers(3)] = UNDEFINED_ANGLE
            centre = landmarks[[j for j in range(21) if j not in EARS]].mean(axis=0)
            side = 1.85 * s * rng.uniform(0.95, 1.05)
            centre = centre + rng.normal(0, 0.03 * s, 2)
            rect = (int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2)),
                    int(round(side)), int(round(side)))

            faces.append(SyntheticFace(face_id, filepath, rect, landmarks, visible, sex,
                                       glasses, tuple(angles)))
            meta.append((face_id, sex, int(rng.random() < 0.1), glasses, 0, 1))
            pose_rows.append((face_id, *angles, 1))
            cam.append((face_id, *angles, 1))
            rects.append((face_id, *rect, 1))
            ellipses.append((face_id, *_ellipse_row(look), 1, 0))
            coords.extend((face_id, j + 1, float(landmarks[j, 0]), float(landmarks[j, 1]), 1)
                          for j in range(21) if visible[j])
            face_id += 1

        pixels = _light(rng, img)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=int(rng.integers(80, 96)))
        (data / "flickr" / filepath).write_bytes(buf.getvalue())
        images.append((image_no, "flickr", file_id, filepath, 0, width, height))
        if progress is not None:
            progress(len(faces), n_faces)

    sqlite = data / "aflw.sqlite"
    _write_sqlite(sqlite, faces, images, meta, pose_rows, rects, ellipses, coords, cam)
    return SyntheticAFLW(root, sqlite, faces)


SCHEMA = """
CREATE TABLE Databases (db_id TEXT PRIMARY KEY, path TEXT, description TEXT);
CREATE TABLE AnnotationType (annot_type_id INTEGER PRIMARY KEY, description TEXT, CODE TEXT);
CREATE TABLE Faces (face_id INTEGER PRIMARY KEY AUTOINCREMENT, file_id TEXT, db_id TEXT);
CREATE TABLE FaceImages (image_id INTEGER PRIMARY KEY AUTOINCREMENT, db_id TEXT, file_id TEXT,
    filepath TEXT, bw INTEGER, width INTEGER, height INTEGER);
CREATE TABLE FaceMetaData (face_id INTEGER, sex TEXT, occluded INTEGER, glasses INTEGER,
    bw INTEGER, annot_type_id INTEGER);
CREATE TABLE FacePose (face_id INTEGER, roll REAL, pitch REAL, yaw REAL, annot_type_id INTEGER);
CREATE TABLE FaceRect (face_id INTEGER, x INTEGER, y INTEGER, w INTEGER, h INTEGER,
    annot_type_id INTEGER);
CREATE TABLE FaceEllipse (face_id INTEGER, x REAL, y REAL, ra REAL, rb REAL, theta REAL,
    annot_type_id INTEGER, upsidedown BOOLEAN);
CREATE TABLE FeatureCoords (face_id INTEGER, feature_id INTEGER, x REAL, y REAL,
    annot_type_id INTEGER);
CREATE TABLE FeatureCoordTypes (feature_id INTEGER PRIMARY KEY, descr TEXT, code TEXT, x REAL,
    y REAL, z REAL);
CREATE TABLE CamPose (face_id INTEGER, camRoll REAL, camPitch REAL, camYaw REAL,
    annot_type_id INTEGER);
CREATE TABLE NearDuplicates (face_id INTEGER);
CREATE INDEX FeatureCoords_face ON FeatureCoords (face_id);
"""


def _write_sqlite(path: Path, faces, images, meta, pose_rows, rects, ellipses, coords,
                  cam) -> None:
    # Built beside its final name and moved into place, so a crash leaves no half database.
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        tmp.unlink()
    con = sqlite3.connect(tmp)
    try:
        con.executescript(SCHEMA)
        con.execute("INSERT INTO Databases VALUES ('flickr', 'flickr/', "
                    "'synthetic faces drawn by dstcli.data.synthetic_aflw')")
        con.execute("INSERT INTO AnnotationType VALUES (1, 'synthetic ground truth', 'SYNTH')")
        con.executemany("INSERT INTO FaceImages VALUES (?, ?, ?, ?, ?, ?, ?)", images)
        con.executemany("INSERT INTO Faces VALUES (?, ?, 'flickr')",
                        [(f.face_id, f.filepath.split("/")[-1]) for f in faces])
        con.executemany("INSERT INTO FaceMetaData VALUES (?, ?, ?, ?, ?, ?)", meta)
        con.executemany("INSERT INTO FacePose VALUES (?, ?, ?, ?, ?)", pose_rows)
        con.executemany("INSERT INTO FaceRect VALUES (?, ?, ?, ?, ?, ?)", rects)
        con.executemany("INSERT INTO FaceEllipse VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ellipses)
        con.executemany("INSERT INTO FeatureCoords VALUES (?, ?, ?, ?, ?)", coords)
        con.executemany("INSERT INTO CamPose VALUES (?, ?, ?, ?, ?)", cam)
        # The mean face in millimetres, as a 3D model for pose fitting would hold it.
        con.executemany(
            "INSERT INTO FeatureCoordTypes VALUES (?, ?, ?, ?, ?, ?)",
            [(fid, descr, code, *(float(v) for v in 75.0 * TEMPLATE[fid - 1]))
             for fid, code, descr in FEATURES],
        )
        con.executemany("INSERT INTO NearDuplicates VALUES (?)",
                        [(f.face_id,) for f in faces[::97]])
        con.commit()
        con.execute("ANALYZE")
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)
