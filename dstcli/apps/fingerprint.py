"""The `fingerprint` app: bilateral multi-task learning on fingerprint-latent pairs.

Section 2.3 and Table 2 of the paper: each sample is a pair (a fingerprint, a latent) and five
tasks read it: the pattern class of each (six classes, Figure 10), the foreground mask of
each, and whether the two come from one finger (contrastive, Eq. 20). The network is the
bilateral VGG16 of Figure 4 (`bilateral-vgg16`).

`prepare` reads pair manifests (dstcli.data.pair_manifest; docs/data/fingerprint.md) and the
consolidation protocol of data_manifests/fingerprint.toml, and writes pair shards: images
(N, 2, 1, H, W) grey at the preset's size (index 0 the fingerprint, 1 the latent), masks as
segmentation labels (H, W) uint8, classes int64 (-1 unlabelled), match float32, and Z per task
from the empty cells and the source's protocol. No subject is ever in both splits.

`prepare_synthetic` first draws the synthetic set (dstcli.data.synthetic_fingerprint) into the
sibling folder `<out>.raw/`, where it stays to be looked at, then prepares its `pairs.csv`
through the same reader.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dstcli.apps import register_app
from dstcli.apps.base import App, TaskSpec
from dstcli.data.staging import draw_synthetic_raw
from dstcli.errors import DataError

if TYPE_CHECKING:  # numpy is imported where used: `dst --help` loads every app
    import numpy as np

TASKS = ("fp_orientation", "fp_segmentation", "lfp_orientation", "lfp_segmentation",
         "matching")
BLOCK = 32  # pairs decoded and appended at a time
LABEL_DTYPES = {"classification": "int64", "segmentation": "uint8", "contrastive": "float32"}


def task_specs(spec: dict[str, Any], size: tuple[int, int]) -> list[TaskSpec]:
    classes = tuple(spec["classes"])
    tasks = []
    for name in TASKS:
        t = spec["tasks"][name]
        kind = t["kind"]
        tasks.append(TaskSpec(
            name=name, kind=kind, depth=int(t["depth"]), branch=int(t["branch"]),
            num_classes=len(classes) if kind == "classification" else None,
            class_names=classes if kind == "classification" else (),
            output_shape=tuple(size) if kind == "segmentation" else (),
            inputs=tuple(int(i) for i in t["inputs"]),
        ))
    return tasks


def label_layout(tasks: list[TaskSpec], size: tuple[int, int]
                 ) -> dict[str, tuple[tuple[int, ...], str]]:
    return {t.name: ((tuple(size) if t.kind == "segmentation" else ()), LABEL_DTYPES[t.kind])
            for t in tasks}


# ---------------------------------------------------------------------------------------------
# Splitting


def source_rule(sources: dict[str, Any], source: str) -> dict[str, Any]:
    """The protocol of a manifest's `source`: [sources.NAME], else [sources.default]."""
    if source in sources:
        return sources[source]
    if "default" not in sources:
        raise DataError(f"source {source!r} is not in data_manifests/fingerprint.toml, which "
                        "has no [sources.default] either; add one of them")
    return sources["default"]


def split_pairs(rows: list, sources: dict[str, Any], test_fraction: float, seed: int
                ) -> tuple[list[tuple[Any, str]], list[str]]:
    """Place every pair in train or test by its source's rule; no subject on both sides.

    Returns [(row, split)] in manifest order, and warnings (pairs left out, unknown sources).
    """
    import numpy as np

    problems: list[str] = []
    fixed: dict[tuple[str, str], tuple[str, str]] = {}  # subject -> (split, where it was set)

    def keys(row) -> tuple[tuple[str, str], tuple[str, str]]:
        return (row.source, row.subject), (row.source, row.fingerprint_subject)

    def fix(key: tuple[str, str], split: str, where: str) -> None:
        if key in fixed and fixed[key][0] != split:
            problems.append(f"{where}: subject {key[1]!r} of source {key[0]} is in {split} "
                            f"here but in {fixed[key][0]} at {fixed[key][1]}; a subject must "
                            "stay on one side of the split")
        fixed.setdefault(key, (split, where))

    explicit: dict[int, str] = {}
    for i, row in enumerate(rows):
        rule = source_rule(sources, row.source)["split"]
        split = row.split
        if rule == "train":
            if split == "test":
                problems.append(f"{row.where}: split is test, but source {row.source} is all "
                                "training by data_manifests/fingerprint.toml; clear the cell "
                                "or change the source's split rule")
                continue
            split = "train"
        elif rule == "column" and split is None:
            problems.append(f"{row.where}: split is empty, but source {row.source} takes its "
                            "split from the manifest (split = \"column\"); write train or test")
            continue
        if split is not None:
            explicit[i] = split
            for key in keys(row):
                fix(key, split, row.where)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:30])
        more = f"\n  - ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise DataError(f"{len(problems)} problem(s) splitting the pairs:\n{shown}{more}")

    # Subjects no row placed explicitly: a seeded share of each source's goes to test.
    undecided: dict[str, set[str]] = {}
    for i, row in enumerate(rows):
        if i not in explicit:
            for source, subject in keys(row):
                if (source, subject) not in fixed:
                    undecided.setdefault(source, set()).add(subject)
    side = {key: split for key, (split, _) in fixed.items()}
    for source in sorted(undecided):
        subjects = sorted(undecided[source])
        rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
        n_test = round(test_fraction * len(subjects))
        test = set(np.asarray(subjects)[rng.permutation(len(subjects))[:n_test]].tolist())
        for s in subjects:
            side[(source, s)] = "test" if s in test else "train"

    placed, dropped = [], {}
    for i, row in enumerate(rows):
        latent_key, print_key = keys(row)
        if i in explicit:
            placed.append((row, explicit[i]))
        elif side[latent_key] == side[print_key]:
            placed.append((row, side[latent_key]))
        else:
            dropped[row.source] = dropped.get(row.source, 0) + 1
    warnings = [f"{n} pair(s) of source {s} left out: their fingerprint and latent subjects "
                "fell on different sides of the subject split (write a split column to "
                "choose it yourself)" for s, n in sorted(dropped.items())]
    unknown = sorted({r.source for r in rows} - set(sources))
    if unknown:
        warnings.append(f"source(s) {', '.join(unknown)} are not in data_manifests/"
                        "fingerprint.toml: every labelled cell counts and pairs are split by "
                        "subject ([sources.default])")
    if not any(split == "test" for _, split in placed):
        warnings.append("no pair is in the test split: every source is all training or no "
                        "subject was held out; evaluation needs a source with test pairs")
    return placed, warnings


# ---------------------------------------------------------------------------------------------
# Images to the network's size


def _padding(shape: tuple[int, int], size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Rows and columns to add so the image takes the input's aspect ratio undistorted."""
    h, w = shape
    target = size[0] / size[1]
    if h / w < target:
        extra = round(w * target) - h
        return ((extra // 2, extra - extra // 2), (0, 0))
    extra = round(h / target) - w
    return ((0, 0), (extra // 2, extra - extra // 2))


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 -> (H, W) uint8: padded with its border's median, then resized."""
    import numpy as np
    from PIL import Image

    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    padded = np.pad(image, _padding(image.shape, size), constant_values=int(np.median(border)))
    resized = Image.fromarray(padded).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def fit_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool -> (H, W) uint8 in {0, 1}, padded and resized as its image (nearest)."""
    import numpy as np
    from PIL import Image

    padded = np.pad(mask.astype(np.uint8), _padding(mask.shape, size), constant_values=0)
    resized = Image.fromarray(padded).resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.uint8)


def _encode_pair(row, size: tuple[int, int], allowed: set[str]
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """One pair's images (2, 1, H, W) and its labels {task: value or None (unlabelled)}."""
    import numpy as np

    from dstcli.data.pair_manifest import load_grey, load_mask

    try:
        sides = []
        labels: dict[str, Any] = {t: None for t in TASKS}
        for image_path, mask_path, prefix in ((row.fingerprint, row.fingerprint_mask, "fp"),
                                              (row.latent, row.latent_mask, "lfp")):
            grey = load_grey(image_path)
            sides.append(fit_image(grey, size))
            if mask_path is not None and f"{prefix}_segmentation" in allowed:
                mask = load_mask(mask_path)
                if mask.shape != grey.shape:
                    raise DataError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but "
                                    f"its image {image_path} is {grey.shape[1]}x"
                                    f"{grey.shape[0]}")
                labels[f"{prefix}_segmentation"] = fit_mask(mask, size)
    except DataError as e:
        raise DataError(f"{row.where}: {e}") from e
    for task, value in (("fp_orientation", row.fingerprint_orientation),
                        ("lfp_orientation", row.latent_orientation), ("matching", row.match)):
        if value is not None and task in allowed:
            labels[task] = value
    return np.stack(sides)[:, None], labels


def _write_split(writer, placed: list, size: tuple[int, int], sources: dict[str, Any],
                 tasks: list[TaskSpec], advance: Callable[[int], None], bad: Any) -> None:
    """Encode and append the pairs a block at a time; a pair that does not decode goes to
    `bad` (a BadItems), and its block is written without it."""
    import numpy as np

    for start in range(0, len(placed), BLOCK):
        block = placed[start:start + BLOCK]
        n = len(block)
        images = np.empty((n, 2, 1, *size), dtype=np.uint8)
        labels = {t.name: (np.full(n, -1, dtype=np.int64) if t.kind == "classification"
                           else np.zeros((n, *size), dtype=np.uint8) if t.kind == "segmentation"
                           else np.zeros(n, dtype=np.float32)) for t in tasks}
        masks = {t.name: np.zeros(n, dtype=np.uint8) for t in tasks}
        ids, good = [], []
        for j, row in enumerate(block):
            allowed = set(source_rule(sources, row.source)["tasks"])
            try:
                images[j], values = _encode_pair(row, size, allowed)
            except DataError as e:
                bad.reject(row.where, e)
                continue
            good.append(j)
            for task, value in values.items():
                if value is not None:
                    labels[task][j] = value
                    masks[task][j] = 1
            ids.append(f"{row.csv}:row {row.row}")
        if len(good) < n:
            images = images[good]
            labels = {t: a[good] for t, a in labels.items()}
            masks = {t: a[good] for t, a in masks.items()}
        if good:
            writer.append(images, labels, masks, ids)
        advance(n)


# ---------------------------------------------------------------------------------------------
# The app


@register_app
class FingerprintApp(App):
    name = "fingerprint"
    model = "bilateral-vgg16"
    description = "Fingerprint-latent pairs: pattern classes, masks and matching (Table 4)"
    input_kind = "pair"

    def prepare(
        self,
        manifests: list[Path],
        out: Path,
        preset: str,
        force: bool = False,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        protocol_extra: dict[str, Any] | None = None,
        skip_bad: bool = False,
    ) -> dict[str, Any]:
        """Read pair manifests and write pair shards; returns the prepared manifest.

        With skip_bad, rows with problems and pairs that do not decode are left out and
        listed in skipped.csv instead of failing the prepare.
        """
        from dstcli.data.bad_items import BadItems
        from dstcli.data.pair_manifest import read_pair_manifest
        from dstcli.data.shards import DatasetWriter, source_record
        from dstcli.models.presets import get_preset

        spec = self.protocol()
        size = get_preset(preset).input_size(self.name)
        protocol = dict(spec["protocol"])
        if seed is not None:
            protocol["seed"] = seed
        protocol["sources"] = spec["sources"]
        protocol.update(protocol_extra or {})

        manifests = [Path(m) for m in manifests]
        if not manifests:
            raise DataError("no pair manifest given; pass --manifest M.csv (or --synthetic N)")
        seen = [m.resolve() for m in manifests]
        if len(set(seen)) != len(seen):
            raise DataError("a pair manifest is given twice; pass each --manifest once")
        rows = []
        bad = BadItems(skip_bad)
        for m in manifests:
            rows.extend(read_pair_manifest(m, tuple(spec["classes"]), bad=bad))
        placed, warnings = split_pairs(rows, spec["sources"], protocol["test_fraction"],
                                       protocol["seed"])

        tasks = task_specs(spec, size)
        total = len(placed)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        sources = [source_record(m) for m in manifests]
        with DatasetWriter(out, self.name, tasks, (2, 1, *size), protocol, sources, preset,
                           label_layout=label_layout(tasks, size), force=force) as writer:
            for w in warnings:
                writer.warn(w)
            for split in ("train", "test"):
                _write_split(writer.split(split), [r for r, s in placed if s == split], size,
                             spec["sources"], tasks, advance, bad)
            bad.write_report(writer)
            return writer.commit()

    def prepare_synthetic(
        self,
        n: int,
        out: Path,
        preset: str,
        force: bool = False,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        skip_bad: bool = False,
    ) -> dict[str, Any]:
        """Draw n synthetic pairs into `<out>.raw/`, then prepare them into out."""
        from dstcli.data.shards import MANIFEST
        from dstcli.data.synthetic_fingerprint import write_synthetic_fingerprints
        from dstcli.models.presets import get_preset

        spec = self.protocol()
        get_preset(preset).input_size(self.name)  # a bad preset fails before the drawing
        out = Path(out)
        seed = int(spec["protocol"]["seed"] if seed is None else seed)
        if out.exists() and not force:
            what = "a prepared dataset" if (out / MANIFEST).exists() else "a folder"
            raise DataError(f"{out} already holds {what}; pass --force to replace it, or "
                            "choose another --out")

        synthetic = spec.get("synthetic", {})
        raw = draw_synthetic_raw(
            out,
            lambda folder: write_synthetic_fingerprints(
                folder, n, seed=seed, test_fraction=float(synthetic.get("test_fraction", 0.2)),
                label_fractions=synthetic.get("label_fractions"),
                classes=tuple(spec["classes"]),
                progress=(lambda i, total: progress(i, 2 * total)) if progress else None,
            ),
            "fingerprint set", f"Synthetic fingerprint pairs written by dst: {n} pairs, "
            f"seed {seed}.")

        def second_half(i: int, total: int) -> None:
            if progress is not None:
                progress(total + i, 2 * total)

        extra = {"synthetic": {"pairs": n, "seed": seed, "raw": str(raw)}}
        return self.prepare([raw / "pairs.csv"], out, preset, force=force, seed=seed,
                            progress=second_half, protocol_extra=extra, skip_bad=skip_bad)
