"""Export dialog: format, destination folder (created when missing; by default one folder per format
under the run's ``export/``, so a second format never replaces the first one's model card), whether
to include the projection head; files that would be replaced are named before anything is written."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QToolButton, QVBoxLayout)

from workbench.core.formats import FORMATS, MODEL
from workbench.core.runfolder import export_dir


def would_replace(folder: Path, fmt: str, run: Path | None = None) -> list[str]:
    """Names of the files an export of ``fmt`` into ``folder`` would overwrite (a model card of the same run is
    extended, not replaced)."""
    from workbench.core.export import would_replace as replaced

    return sorted({p.name for p in replaced(fmt, folder, run)})


class ExportDialog(QDialog):
    def __init__(self, run: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Export {Path(run).name}")
        self.run = Path(run).resolve()
        self.format = QComboBox()
        self.format.setObjectName("export_format")
        self.format.addItems(FORMATS)
        self.folder = QLineEdit()
        self.folder.setObjectName("export_folder")
        self.folder.setMinimumWidth(420)
        browse = QToolButton()
        browse.setText("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.head = QCheckBox("include the projection head (default: the encoder's representation)")
        self.fitted = _fitted_readout(self.run)
        self.readout = QCheckBox(f"add the run's {self.fitted or 'fitted'} read-out as a separate last layer (default: the plain backbone)")
        self.readout.setObjectName("export_readout")
        self.readout.setToolTip("only for runs trained with eval.readout = centred or whitened" if not self.fitted else
                                "readout.mean and readout.projection beside the backbone's weights, described in the model card")
        self.note = QLabel("")
        self.note.setObjectName("export_note")
        self.note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("format", self.format)
        form.addRow("folder", row)
        form.addRow("", self.head)
        form.addRow("", self.readout)
        self.head.toggled.connect(lambda on: self._format_changed(self.format.currentText()))
        self.readout.toggled.connect(lambda on: self._format_changed(self.format.currentText()))
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addWidget(self.buttons)
        self._auto = True
        self.format.currentTextChanged.connect(self._format_changed)
        self.folder.textEdited.connect(self._edited)
        self._format_changed(self.format.currentText())

    def _format_changed(self, fmt: str):
        self.head.setEnabled(fmt in MODEL and not self.readout.isChecked())  # the head is trained on the plain output
        self.readout.setEnabled(bool(self.fitted) and not self.head.isChecked())
        if self._auto:
            self.folder.setText(str(export_dir(self.run, fmt)))
        self._check()

    def _edited(self, *_):
        self._auto = False
        self._check()

    def _browse(self):
        start = Path(self.folder.text() or self.run)
        while not start.exists() and start != start.parent:
            start = start.parent  # the dialog cannot start in a folder that does not exist yet
        path = QFileDialog.getExistingDirectory(self, "Export into folder", str(start))
        if path:
            self._auto = False
            self.folder.setText(path)
            self._check()

    def _check(self):
        folder = Path(self.folder.text().strip())
        replaced = would_replace(folder, self.format.currentText(), self.run) if self.folder.text().strip() else []
        ok = bool(self.folder.text().strip())
        if not ok:
            self.note.setText("choose a folder")
        elif replaced:
            self.note.setText("<span style='color:#c0392b'>these files in the folder will be replaced: "
                              + ", ".join(replaced) + "</span> (choose another folder to keep them)")
        else:
            self.note.setText("the folder is created if it does not exist; nothing in it is replaced")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(ok)

    def choice(self) -> tuple[str, str, bool, bool]:
        """(format, folder, include_head, readout)."""
        return (self.format.currentText(), self.folder.text().strip(), self.head.isChecked() and self.head.isEnabled(),
                self.readout.isChecked() and self.readout.isEnabled())


def _fitted_readout(run: Path) -> str:
    """The read-out the run fitted ("centred", "whitened"), or "" (none, or its config cannot be read)."""
    from workbench.core.registry import ConfigError
    from workbench.core.runs import load_run_config

    try:
        readout = load_run_config(run).eval.readout
    except (ConfigError, OSError):
        return ""
    return "" if readout == "none" else readout
