"""Where everything lives in a store: the one home of every key refit reads or writes.

Keys are relative to the store's root (a local folder or ``s3://bucket/prefix``), so one layout
serves both backends. The strings are what existing stores hold: change one and every store
written before needs moving. Prefixes end with ``/`` (ready for ``store.list``)::

    runs/<model>/<run_id>/validated.parquet        a run's validated rows
    runs/<model>/<run_id>/split/<name>.parquet     its train / validation / test splits
    runs/<model>/<run_id>/checkpoints/<trial>/     MLP checkpoints of its search (refit.training.search)
    runs/<model>/<run_id>/candidate/               the candidate artifact
    runs/<model>/<run_id>/dossier/                 the gate's decision dossier
    runs/<run_id>/                                 runs of older stores (housekeeping still finds them)
    quarantine/<dataset>/<stamp>/rows.parquet      rows validation rejected
    quarantine/<dataset>/<stamp>/summary.json      and why
    captures/<model>/requests/                     captured requests (partitions: refit.capture)
    captures/<model>/labels/                       labels that arrived later
    drift/<model>/reports/<stamp>-<id>.html        a drift check's Evidently report (when stored)
    drift/<model>/reports/evidently-<ver>.js       the dashboard script those reports share
    drift/<model>/calibration/v<version>/n<rows>.npz   null scores per column, per window size (refit.drift)
    drift/<model>/calibration/v<version>/kinds.json    the column kinds of that version's checks
    drift/<model>/history/                         each drift check's result (refit.drift)
    governor/<model>/ledger/                       the retrain governor's decisions (refit.policy)
    governor/<model>/index.json                    and its checkpoint
    webhook/<model>/outbox/                        drift alerts not yet handed to Prefect
    registry/<model>/                              versions, aliases, history (refit.registry)
    replay/<model>/timeline.{json,md,png}          a replay's timeline (refit.replay; scratch stores)

What lies below a prefix (partition names, sequence numbers, version folders) belongs to the one
module that writes and reads it, named above.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass


@dataclass(frozen=True)
class RunKeys:
    """The keys of one retrain run's folder, ``runs/<model>/<run_id>/``."""

    folder: str  # no trailing slash: runs/<model>/<run_id>

    @property
    def prefix(self) -> str:
        return f"{self.folder}/"

    @property
    def validated(self) -> str:
        """The validated rows, staged for the split."""
        return f"{self.folder}/validated.parquet"

    def split(self, name: str) -> str:
        """One split (``train``, ``validation``, ``test``)."""
        return f"{self.folder}/split/{name}.parquet"

    @property
    def candidate(self) -> str:
        """The candidate artifact's folder (no trailing slash: the artifact's own key)."""
        return f"{self.folder}/candidate"

    @property
    def dossier(self) -> str:
        return f"{self.folder}/dossier/"


@dataclass(frozen=True)
class QuarantineKeys:
    """One validation's quarantine: the rejected rows and the summary."""

    folder: str  # quarantine/<dataset>/<stamp>

    @property
    def rows(self) -> str:
        return f"{self.folder}/rows.parquet"

    @property
    def summary(self) -> str:
        return f"{self.folder}/summary.json"


@dataclass(frozen=True)
class StoreLayout:
    """The top-level folders of a store, and the keys under them.

    One instance, :data:`LAYOUT`, is what the code uses; the fields are the folder names
    existing stores hold (they are fields so that the list of them is data, not so that a
    store could rename them).
    """

    runs: str = "runs"
    quarantine_root: str = "quarantine"
    captures: str = "captures"
    drift: str = "drift"
    governor: str = "governor"
    webhook: str = "webhook"
    registry: str = "registry"
    replay: str = "replay"

    def folders(self) -> tuple[str, ...]:
        """Every top-level folder refit writes."""
        return tuple(str(f) for f in astuple(self))

    # runs ------------------------------------------------------------------------------------

    def run(self, model: str, run_id: str) -> RunKeys:
        """The folder of one retrain run of ``model``."""
        return RunKeys(f"{self.runs}/{model}/{run_id}")

    @property
    def runs_prefix(self) -> str:
        """Every run of every model (and the older ``runs/<run_id>/`` folders)."""
        return f"{self.runs}/"

    # validation ------------------------------------------------------------------------------

    def quarantine(self, dataset: str, stamp: str) -> QuarantineKeys:
        """Where one validation of ``dataset`` (at ``stamp``) keeps its rejected rows and summary."""
        return QuarantineKeys(f"{self.quarantine_root}/{dataset}/{stamp}")

    # production traffic ----------------------------------------------------------------------

    def capture_requests(self, model: str) -> str:
        """Captured requests of ``model`` (partitioned by date and hour below)."""
        return f"{self.captures}/{model}/requests/"

    def capture_labels(self, model: str) -> str:
        """Labels of captured requests, by arrival date below."""
        return f"{self.captures}/{model}/labels/"

    # drift and the governor ------------------------------------------------------------------

    def drift_report(self, model: str, stamp: str) -> str:
        """One drift check's HTML report (``stamp``: the window's end and the check's id)."""
        return f"{self.drift}/{model}/reports/{stamp}.html"

    def drift_reports(self, model: str) -> str:
        """Every stored HTML report of ``model`` (and the Evidently script they share)."""
        return f"{self.drift}/{model}/reports/"

    def drift_report_asset(self, model: str, name: str) -> str:
        """A file the reports share (Evidently's dashboard script, stored once per version)."""
        return f"{self.drift}/{model}/reports/{name}"

    def drift_calibration(self, model: str, version: int, bucket: int) -> str:
        """The null distributions of one champion version's columns for windows of ``bucket`` rows."""
        return f"{self.drift_calibrations(model, version)}n{bucket}.npz"

    def drift_calibrations(self, model: str, version: int | None = None) -> str:
        """Everything calibrated for one version (every version's when None): nulls and column kinds."""
        return f"{self.drift}/{model}/calibration/" + ("" if version is None else f"v{version}/")

    def drift_kinds(self, model: str, version: int) -> str:
        """The column kinds (numerical / categorical) a version's drift checks use, fixed at promotion."""
        return f"{self.drift_calibrations(model, version)}kinds.json"

    def drift_history(self, model: str) -> str:
        """One object per drift check, timestamp first (listing order is time order)."""
        return f"{self.drift}/{model}/history/"

    def governor_ledger(self, model: str) -> str:
        """The append-only ledger of retrain decisions."""
        return f"{self.governor}/{model}/ledger/"

    def governor_index(self, model: str) -> str:
        """The ledger index's checkpoint."""
        return f"{self.governor}/{model}/index.json"

    def webhook_outbox(self, model: str) -> str:
        """Drift alerts received and not yet turned into a Prefect run."""
        return f"{self.webhook}/{model}/outbox/"

    def replay_timeline(self, model: str, suffix: str) -> str:
        """A replay's timeline (``json``, ``md``, ``png``), in the replay's own scratch store."""
        return f"{self.replay}/{model}/timeline.{suffix}"

    # registry --------------------------------------------------------------------------------

    def registry_model(self, model: str, root: str | None = None) -> str:
        """One model's folder in the registry (``root``: a registry kept elsewhere in the store)."""
        return f"{root or self.registry}/{model}/"


#: The layout every module uses.
LAYOUT = StoreLayout()
