"""Which side of the intensity scale a lesion lies on, per MR sequence: the map and the baseline's sign.

``score.map: auto`` (the default) and ``baseline.sign: auto`` follow the sequence of the
scored channel (:data:`LESION_SIDE`):

- FLAIR, T2, PD, DWI: lesions are hyperintense (demyelination, oedema, gliosis, tumour,
  acute infarct): ``brighter`` map and baseline. A two-sided rule would rank dark CSF, the
  darkest normal tissue on these sequences, as anomalous (on MS FLAIR the baseline's voxel
  AUROC fell from 0.96 to 0.77 with |z|; issue 20).
- SWI: microbleeds and calcifications are hypointense: ``darker``.
- T1 and T1c: two-sided (``squared`` map, ``absolute`` baseline). On T1 most lesions are
  hypointense (MS black holes, tumours, infarcts) but subacute haemorrhage, fat and melanin
  are bright, and CSF is the darkest normal tissue, so ``darker`` does not suppress the
  baseline's main false positive either. On T1c an enhancing rim is bright and the necrotic
  core dark: one side would miss half of a tumour.
- CT and unknown sequences: two-sided (haemorrhage is bright, infarct dark).

The sequence is the model's (the sequence keyword of each channel of its training scans,
when they all had the same one), else the scanned case's. The choice is recorded per case
(case.json ``contrast``) and in settings.json; explicit settings (``score.map=squared``...)
are kept as given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.export.pretrained import PretrainedMAE
from medmae.io.manifest import Case

LESION_SIDE = {"flair": "brighter", "t2": "brighter", "pd": "brighter", "dwi": "brighter", "swi": "darker",
               "t1": "squared", "t1c": "squared"}
"""MR sequence keyword -> the map kind whose side lesions lie on (squared: both sides)."""
TWO_SIDED = "squared"


@dataclass(frozen=True)
class Contrast:
    """The resolved map kind and baseline sign, and what they were resolved from (for the record)."""

    map: str
    baseline_sign: str
    sequences: tuple[str, ...]
    source: str
    """Where ``sequences`` came from: 'model' (its training scans), 'case' (the case's own) or 'none'."""

    def as_dict(self) -> dict:
        return {**asdict(self), "sequences": list(self.sequences)}


def model_sequences(model: PretrainedMAE) -> tuple[str, ...]:
    """Per-channel sequence keywords of the model's training scans, when they all agree; () otherwise."""
    seqs = [s for s in (model.data or {}).get("sequences") or [] if s]
    if len(seqs) != 1:
        return ()
    parts = tuple(p.strip().lower() for p in seqs[0].split(","))
    return parts if len(parts) == model.in_channels else ()


def _side(sequences: tuple[str, ...], channel: int | None) -> str:
    """The map kind for ``channel`` (None: every channel must agree) of these sequences."""
    if not sequences:
        return TWO_SIDED
    picked = sequences if channel is None else sequences[channel:channel + 1]
    sides = {LESION_SIDE.get(s, TWO_SIDED) for s in picked}
    return sides.pop() if len(sides) == 1 else TWO_SIDED


def baseline_sign_of(map_kind: str) -> str:
    return "absolute" if map_kind == TWO_SIDED else map_kind


def resolve(cfg: AnomalyConfig, model: PretrainedMAE, case: Case | None = None) -> Contrast:
    """The map kind and baseline sign to use for ``case`` (None: from the model alone)."""
    sequences, source = model_sequences(model), "model"
    if not sequences and case is not None and case.modality == "MR":
        sequences, source = tuple(s.strip().lower() for s in case.sequences), "case"
    if not any(sequences):
        sequences, source = (), "none"
    auto_map = cfg.score.map == "auto"
    kind = _side(sequences, cfg.score.channel) if auto_map else cfg.score.map
    if cfg.baseline.sign != "auto":
        sign = cfg.baseline.sign
    elif auto_map:
        sign = baseline_sign_of(_side(sequences, cfg.baseline.channel))
    else:
        sign = baseline_sign_of(kind)
    return Contrast(kind, sign, sequences, source)
