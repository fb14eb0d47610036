"""The face apps of the paper's section 2.2: `aflw` (Tables 1 and 3) and `mtfl`.

Both run the unilateral VGG16 of Figure 2 on a noisy face: classification heads (gender,
spectacles, and for MTFL smile and a five-bin pose), a landmark head and, for AFLW, a pose-angle
head, all at depth 17, and a denoising decoder at depth 26. Their protocols live in
data_manifests/aflw.toml and mtfl.toml; docs/data/faces.md describes the data.

`AflwApp.prepare_synthetic` writes a synthetic AFLW into `<out>.raw/` (the folder beside the
prepared one, named after it) and prepares it through the same reader as the real database.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dstcli.apps import register_app
from dstcli.apps.base import App, TaskSpec
from dstcli.data.staging import draw_synthetic_raw
from dstcli.errors import DataError, DstError


class _FaceApp(App):
    """What AFLW and MTFL share: tasks and protocol from the toml, the writing of shards."""

    model = "unilateral-vgg16"
    task_names: tuple[str, ...] = ()  # the tasks the reader produces, in the toml's order

    def _landmark_scale(self, protocol: dict[str, Any]) -> float:
        """TaskSpec.scale of the landmarks: the face box's width in input-width units."""
        raise NotImplementedError

    def _settings(self, seed: int | None) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """The toml's tasks and protocol (seed overridden), checked, and the noise."""
        from dstcli.data.aflw import Noise
        from dstcli.data.protocols import manifests_dir

        spec = self.protocol()
        where = manifests_dir() / f"{self.name}.toml"
        problems = []
        tasks = spec.get("tasks", {})
        if tuple(tasks) != self.task_names:
            problems.append(f"[tasks] must define {', '.join(self.task_names)} in this order, "
                            f"found {', '.join(tasks) or 'none'}")
        protocol = dict(spec.get("protocol", {}))
        fractions = protocol.get("label_fractions", {})
        for name in self.task_names:
            f = fractions.get(name)
            if not isinstance(f, int | float) or not 0 <= f <= 1:
                problems.append(f"protocol.label_fractions.{name} must be a number in [0, 1], "
                                f"found {f!r}")
        noise = protocol.get("noise", {})
        if noise.get("kind") != "speckle":
            problems.append(f"protocol.noise.kind must be \"speckle\", found {noise.get('kind')!r}")
        share, variance = noise.get("pixel_fraction"), noise.get("variance")
        if not isinstance(share, int | float) or not 0 <= share <= 1:
            problems.append(f"protocol.noise.pixel_fraction must be in [0, 1], found {share!r}")
        if not isinstance(variance, int | float) or variance < 0:
            problems.append(f"protocol.noise.variance must be >= 0, found {variance!r}")
        problems += self._check_protocol(protocol)
        if problems:
            raise DstError(f"{where}: " + "; ".join(problems))
        if seed is not None:
            protocol["seed"] = seed
        return tasks, protocol, Noise(float(share), float(variance))

    def _check_protocol(self, protocol: dict[str, Any]) -> list[str]:
        return []

    def _tasks(self, tasks: dict[str, Any], size: tuple[int, int],
               protocol: dict[str, Any]) -> list[TaskSpec]:
        specs = []
        for name, t in tasks.items():
            extra: dict[str, Any] = {}
            if t["kind"] == "classification":
                extra = {"num_classes": len(t["classes"]), "class_names": tuple(t["classes"])}
            elif t["kind"] == "landmarks":
                extra = {"output_shape": (t["points"], 2), "scale": self._landmark_scale(protocol)}
            elif t["kind"] == "pose":
                extra = {"output_shape": (3,), "scale": math.pi}
            elif t["kind"] == "denoise":
                extra = {"output_shape": (3, *size)}
            specs.append(TaskSpec(name=name, kind=t["kind"], depth=t["depth"],
                                  branch=t["branch"], **extra))
        return specs

    def _write(
        self,
        out: Path,
        preset: str,
        force: bool,
        seed: int | None,
        progress: Callable[[int, int], None] | None,
        read: Callable[[dict[str, Any], Any], tuple],
        extra: dict[str, Any] | None = None,
        skip_bad: bool = False,
    ) -> dict[str, Any]:
        """The steps both apps share; `read(protocol, bad)` gives records, split, sources and
        warnings, handing bad items to `bad` (dstcli.data.bad_items)."""
        import numpy as np

        from dstcli.data import aflw
        from dstcli.data.bad_items import BadItems
        from dstcli.data.shards import DatasetWriter
        from dstcli.models.presets import get_preset

        task_table, protocol, noise = self._settings(seed)
        size = get_preset(preset).input_size(self.name)
        tasks = self._tasks(task_table, size, protocol)
        layout = aflw.label_layout(tasks, (3, *size))

        # The writer comes first so that an existing --out is refused before any reading.
        with DatasetWriter(out, self.name, tasks, (3, *size), protocol, [], preset,
                           label_layout=layout, force=force) as writer:
            bad = BadItems(skip_bad)
            records, is_train, sources, warnings = read(protocol, bad)
            has = {t.name: np.array([t.name in r.has for r in records]) for t in tasks}
            kept, available = aflw.keep_labels(has, is_train, protocol["label_fractions"],
                                               protocol["seed"])
            protocol["faces"] = {"train": int(is_train.sum()), "test": int((~is_train).sum())}
            protocol["labels_available"] = available
            if extra:
                protocol.update(extra)
            writer.sources.extend(sources)
            for w in warnings:
                writer.warn(w)
            aflw.write_faces(records, is_train, kept, writer, tasks, size, noise,
                             protocol["seed"], progress, bad)
            bad.write_report(writer)
            return writer.commit()


@register_app
class AflwApp(_FaceApp):
    name = "aflw"
    description = "AFLW faces: gender, spectacles, 21 landmarks, pose, denoising (Table 3)"
    task_names = ("gender", "spectacles", "landmarks", "pose", "denoising")

    def _landmark_scale(self, protocol: dict[str, Any]) -> float:
        # The crop's side is (1 + 2 * margin) face boxes (dstcli.data.aflw.crop_box).
        return 1.0 / (1.0 + 2.0 * protocol["crop_margin"])

    def _check_protocol(self, protocol: dict[str, Any]) -> list[str]:
        problems = []
        margin = protocol.get("crop_margin")
        if not isinstance(margin, int | float) or margin < 0:
            problems.append(f"protocol.crop_margin must be >= 0, found {margin!r}")
        train, total = protocol.get("train_faces"), protocol.get("of_faces")
        if not (isinstance(train, int) and isinstance(total, int) and 0 < train <= total):
            problems.append("protocol.train_faces and protocol.of_faces must be whole numbers "
                            f"with 0 < train_faces <= of_faces, found {train!r}, {total!r}")
        return problems

    def prepare(
        self,
        raw: Path,
        out: Path,
        preset: str,
        force: bool = False,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        extra: dict[str, Any] | None = None,
        skip_bad: bool = False,
    ) -> dict[str, Any]:
        """Read an AFLW tree (data/aflw.sqlite, data/flickr/) and write shards; the manifest."""
        import numpy as np

        from dstcli.data import aflw
        from dstcli.data.shards import source_record

        raw = Path(raw)

        def read(protocol: dict[str, Any], bad: Any) -> tuple:
            records, warnings = aflw.scan(raw, protocol["crop_margin"], bad)
            n = len(records)
            # Table 1's 17,000 of 24,384, in proportion for any other number of faces.
            n_train = round(n * protocol["train_faces"] / protocol["of_faces"])
            # Near-duplicate photos stay in training: none of them is tested on.
            is_train = aflw.split_faces(n, n_train, protocol["seed"],
                                        np.array([r.near_duplicate for r in records], bool))
            sources = [source_record(raw / aflw.SQLITE), source_record(raw / aflw.IMAGES)]
            return records, is_train, sources, warnings

        return self._write(out, preset, force, seed, progress, read, extra, skip_bad)

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
        """Write n synthetic faces into `<out>.raw/`, then prepare them like the real AFLW.

        The generator's seed is `seed`, or the protocol's when None; the same seed also splits
        the faces. An existing `<out>.raw/` is replaced only if a synthetic run wrote it.
        """
        from dstcli.data.synthetic_aflw import write_synthetic_aflw
        from dstcli.models.presets import get_preset

        out = Path(out)
        get_preset(preset)
        if n < 1:
            raise DstError(f"--synthetic must be at least 1 face, got {n}")
        if out.exists() and not force:
            raise DataError(f"{out} already exists; pass --force to replace it, or choose "
                            "another --out")
        generator_seed = self._settings(seed)[1]["seed"]
        raw = draw_synthetic_raw(
            out, lambda folder: write_synthetic_aflw(folder, n, generator_seed), "AFLW",
            f"A synthetic AFLW written by dst: {n} faces, seed {generator_seed}.")

        extra = {"synthetic": {"faces": n, "seed": generator_seed, "raw": str(raw)}}
        return self.prepare(raw, out, preset, force=force, seed=seed, progress=progress,
                            extra=extra, skip_bad=skip_bad)


@register_app
class MtflApp(_FaceApp):
    name = "mtfl"
    description = "MTFL faces: gender, spectacles, 5 landmarks, smile, pose bins, denoising"
    task_names = ("gender", "spectacles", "landmarks", "smile", "pose", "denoising")

    def _landmark_scale(self, protocol: dict[str, Any]) -> float:
        from dstcli.data.mtfl import LANDMARK_SCALE

        return LANDMARK_SCALE

    def _check_protocol(self, protocol: dict[str, Any]) -> list[str]:
        share = protocol.get("test_fraction")
        if not isinstance(share, int | float) or not 0 <= share <= 1:
            return [f"protocol.test_fraction must be in [0, 1], found {share!r}"]
        return []

    def prepare(
        self,
        raw: Path,
        out: Path,
        preset: str,
        force: bool = False,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        skip_bad: bool = False,
    ) -> dict[str, Any]:
        """Read an MTFL tree (training.txt and/or testing.txt) and write shards; the manifest."""
        from dstcli.data import mtfl
        from dstcli.data.shards import source_record

        raw = Path(raw)

        def read(protocol: dict[str, Any], bad: Any) -> tuple:
            found, warnings = mtfl.scan(raw, bad)
            records, is_train = mtfl.split(found, protocol["test_fraction"], protocol["seed"])
            protocol["annotations"] = sorted(found)
            return records, is_train, [source_record(raw)], warnings

        return self._write(out, preset, force, seed, progress, read, skip_bad=skip_bad)
