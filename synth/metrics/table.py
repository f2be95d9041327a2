"""The paper's Table 2 as a value, as JSON (fixed keys, null where not computed) and as Markdown."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Table2:
    """Scores of one set of faces; None where a metric was not computed."""

    is_mean: float | None = None
    is_var: float | None = None
    fid: float | None = None
    openface_mean: float | None = None
    openface_var: float | None = None
    fr_matching: int | None = None
    fr_not_matching: int | None = None
    fr_not_faces: int | None = None
    count: int | None = None                                 # images scored
    notes: dict[str, str] = field(default_factory=dict)      # per metric: method or why it is missing

    def to_json(self) -> dict:
        return asdict(self)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if f.name not in ("count", "notes")]


# The paper's figures: 256 px, 132K frames of one person, 500 kimg on one V100, 1,000 generated faces.
PAPER = Table2(is_mean=1.635, is_var=0.011, fid=29.318, openface_mean=0.401, openface_var=0.068,
               fr_matching=929, fr_not_matching=66, fr_not_faces=5, count=1000)


def _pair(mean: float | None, var: float | None, missing: str) -> str:
    return missing if mean is None else f"Mean: {mean:.3f} Variance: {var:.3f}"


def _cells(t: Table2) -> list[str]:
    na = "not computed"
    fr = (t.notes.get("fr", na) if t.fr_matching is None else
          f"Matching: {t.fr_matching} Not matching: {t.fr_not_matching} Not faces: {t.fr_not_faces}")
    return [_pair(t.is_mean, t.is_var, t.notes.get("is", na)),
            t.notes.get("fid", na) if t.fid is None else f"{t.fid:.3f}",
            _pair(t.openface_mean, t.openface_var, t.notes.get("openface", na)),
            fr]


ROWS = ("Inception Score ↑", "Fréchet Inception Distance ↓", "OpenFace-style comparison ↓",
        "face_recognition comparison")


def to_markdown(table: Table2, paper: Table2 | None = PAPER) -> str:
    """Table 2 for `table` (with the paper's column beside it), then how each metric was computed."""
    ours = _cells(table)
    head = f"| Metric | Ours ({table.count} images) |" + (f" Paper ({paper.count} images) |" if paper else "")
    lines = [head, "|---|---|" + ("---|" if paper else "")]
    theirs = _cells(paper) if paper else [None] * len(ROWS)
    for name, a, b in zip(ROWS, ours, theirs):
        lines.append(f"| {name} | {a} |" + (f" {b} |" if paper else ""))
    methods = [f"- {k}: {v}" for k, v in table.notes.items()]
    return "\n".join(lines + ([""] + methods if methods else []))
