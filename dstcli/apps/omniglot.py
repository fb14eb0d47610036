"""The `omniglot` app: character recognition, one classification task per alphabet.

Section 4.3 and Table 6 of the paper: the VGG16 encoder, a branch per alphabet from the last
encoder layer, and the average classification error over alphabets as the figure of merit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dstcli.apps import register_app
from dstcli.apps.base import App, TaskSpec


@register_app
class OmniglotApp(App):
    name = "omniglot"
    model = "unilateral-vgg16"
    description = "Omniglot character recognition, a task per alphabet (Table 6)"

    def prepare(
        self,
        raw: list[Path],
        out: Path,
        preset: str,
        force: bool = False,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        skip_bad: bool = False,
    ) -> dict[str, Any]:
        """Read the official layout and write shards; returns the manifest.

        With skip_bad, stray files, duplicates and undecodable drawings are left out and
        listed in skipped.csv instead of failing the prepare.
        """
        from dstcli.data import omniglot
        from dstcli.data.bad_items import BadItems
        from dstcli.data.shards import DatasetWriter, source_record
        from dstcli.models.presets import get_preset

        spec = self.protocol()
        protocol = dict(spec["protocol"])
        if seed is not None:
            protocol["seed"] = seed
        size = get_preset(preset).input_size(self.name)

        bad = BadItems(skip_bad)
        alphabets, warnings = omniglot.scan(raw, bad)
        tasks = [
            TaskSpec(
                name=a.name,
                kind=spec["tasks"]["kind"],
                depth=spec["tasks"]["depth"],
                branch=spec["tasks"]["branch"],
                num_classes=len(a.characters),
                class_names=tuple(a.characters),
            )
            for a in alphabets
        ]
        total = sum(len(d) for a in alphabets for d in a.drawings.values())
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        sources = [source_record(Path(p)) for p in raw]
        with DatasetWriter(out, self.name, tasks, (1, *size), protocol, sources, preset,
                           force=force) as writer:
            for w in warnings:
                writer.warn(w)
            omniglot.write_shards(alphabets, writer, size, protocol["test_fraction"],
                                  protocol["seed"], advance, bad)
            bad.write_report(writer)
            return writer.commit()
