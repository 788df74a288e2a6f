"""What the window does with runs and pictures, off the GUI thread: open a run (its history, its embedding in
the orientation it was trained in), overlay runs, clone, export, retrieve neighbours of a point or a dropped file.
A mixin of MainWindow: it uses the window's panels, ``background`` and ``show_error``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.core.config import Config
from workbench.core.history import read_history
from workbench.core.runfolder import read_view
from workbench.core.registry import ConfigError
from workbench.core.runfolder import config_path


class RunActions:
    # ----- retrieval -----
    def _retrieve(self, row: int):
        ev = self.embedding.latest
        if ev is not None and self.held_out is not None:
            self.tabs.setCurrentWidget(self.inspector)
            self.inspector.show_retrieval(row, ev, self.held_out, self.embedding.classes, files=self.embedding.files)

    def retrieve_file(self, path: str):
        from workbench.core.inference import RunModel, load_image_file

        ev = self.embedding.latest
        if ev is None or not self.run_dir:
            self.show_error("train or open a run first: retrieval needs an embedding")
            return
        run = self.run_dir

        def work():
            rm = RunModel.load(run)
            img = load_image_file(path, rm.channels, rm.image_size)
            return img[0].numpy(), rm.embed(img)[0]

        def show(result):
            image, vec = result
            self.tabs.setCurrentWidget(self.inspector)
            self.inspector.show_query(vec, image, -1, ev, self.held_out, self.embedding.classes, files=self.embedding.files,
                                      query_file=path)

        self.background(work, show, "embedding the image")

    def dragEnterEvent(self, e):  # noqa: N802 - Qt's name
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e):  # noqa: N802 - Qt's name
        urls = e.mimeData().urls()
        if urls:
            self.retrieve_file(urls[0].toLocalFile())

    # ----- runs -----
    def open_run(self, run: str):
        if self.running:
            self.show_error("stop the training first: opening a run replaces the curves and the embedding")
            return
        try:
            cfg = Config.load(config_path(run))
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        self.plots.reset()
        self.plots.clear_overlays()
        self.inspector.reset()
        self._show_history(run)
        self.plots.fit()
        self.run_dir = run
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat(f"opened {Path(run).name}")
        self._show_run_embedding(run, cfg)
        self.tabs.setCurrentWidget(self.plots)

    def _show_run_embedding(self, run, cfg):
        from workbench.core.events import EmbeddingEvent

        from workbench.core.inference import RunModel
        from workbench.core.projection import pca_2d

        view = read_view(run)

        def work():
            rm = RunModel.load(run)
            _, test = rm.splits()
            if view is not None and int(view[1].max(initial=-1)) < len(test):
                rows = view[1]  # the points the live view showed, so the picture matches it
            else:
                rows = np.arange(min(cfg.eval.embed_points or 2000, len(test)))
            emb = rm.embed(test.images[rows])  # the backbone's output, as the live view and the kNN read it
            ev = EmbeddingEvent(-1, -1, pca_2d(emb), emb, test.labels[rows].numpy(), np.asarray(rows))
            return test, ev, test.file_names()

        def show(result):
            test, ev, files = result
            self.held_out = test.images.numpy()
            self.embedding.reset()
            self.embedding.set_reference(view)
            self.embedding.set_dataset(self.held_out, test.classes)
            self.embedding.set_files(self.held_out, files)
            self.embedding.show_embedding(ev)
            self.runOpened.emit(run)

        self.background(work, show, "embedding the held-out set")

    def overlay_runs(self, runs: list):
        """Other runs' curves over the shown run's (which is already drawn, so it is not overlaid on itself)."""
        self.plots.clear_overlays()
        shown = Path(self.run_dir).resolve() if self.run_dir and self.plots.steps else None
        others = [r for r in runs if Path(r).resolve() != shown]
        if shown is not None and others:
            self.plots.name_base(shown.name)  # the shown run named in the legends as the others are
        for i, run in enumerate(others):
            events = read_history(run)
            steps = [e for e in events if hasattr(e, "loss")]
            evals = [e for e in events if not hasattr(e, "loss") and "knn_acc" in e.metrics]
            terms: dict = {}
            for e in steps:
                for k, v in e.terms.items():
                    xs, ys = terms.setdefault(k, ([], []))
                    xs.append(e.step)
                    ys.append(v)
            self.plots.overlay(Path(run).name, [e.step for e in steps], [e.loss for e in steps],
                               [e.epoch for e in evals], [e.metrics["knn_acc"] for e in evals], i + 1,
                               lrs=[e.lr for e in steps], terms=terms)
        self.tabs.setCurrentWidget(self.plots)

    def overlay_run(self, run: str):
        self.overlay_runs([run])

    def clone_run(self, run: str):
        try:
            self.setup.set_config(Config.load(config_path(run)))
        except ConfigError as exc:
            self.show_error(str(exc))

    def export_dialog(self, run: str):
        from workbench.gui.export_dialog import ExportDialog

        dlg = ExportDialog(run, self)
        if dlg.exec() == ExportDialog.Accepted:
            self.export_run(run, *dlg.choice())

    def export_run(self, run: str, fmt: str, folder: str, include_head: bool = False, readout: bool = False):
        from workbench.core.export import export_run
        from workbench.core.runfolder import make_folder

        def work():
            if Path(folder).suffix:  # the dialog names a folder, even one called "v1.2" (made first: left if it fails)
                make_folder(folder, "export folder")
            return export_run(run, fmt, folder, include_head=include_head, what="export folder", readout=readout)

        def done(paths):
            names = ", ".join(Path(p).name for p in paths)
            self.set_status(f"exported {len(paths)} file(s) to {folder}: {names}")
            self.exported.emit([str(p) for p in paths])

        self.background(work, done, f"exporting {fmt}")
