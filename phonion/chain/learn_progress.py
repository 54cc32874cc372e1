"""Progress of the chain's learn stage (committee training, active-learning rounds, the gate), with an ETA.

The learn stage runs in this process and in worker processes (members train in parallel, MD runs in a
sweep), so, like ``phonion.chain.stages.StageProgress`` for the MD stages, a thread reads what the work
leaves on disk every ``PROGRESS_EVERY_S`` seconds and prints one line::

    phonion chain: learn: round 1 (gate after 1–2 rounds): training 3 members, 52 % (epochs), phase ETA 2 min; stage 6 min so far

Phases and what measures them (``OUT/learn/round_NNN/``): training — epochs in each member's Lightning
``logs/csv/version_*/metrics.csv`` against ``max_epochs`` (``train.trainer`` in round 0, ``finetune`` after);
exploring and the gate's MD — integrator steps of the runs under ``explore/`` and ``validation/md/``
(``run.json``, and the checkpoint lines of ``run.log`` while a run goes on); labelling — labelled frames
against ``picked.json``. The phase ETA assumes the rate seen since the phase started.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from phonion.core.ticker import Ticker

__all__ = ["LearnProgress", "learn_phase"]


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _epochs_done(member: Path) -> int:
    """Epochs a member finished so far (its newest Lightning CSV log; validation rows carry the epoch)."""
    logs = sorted(member.glob("logs/csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return 0
    try:
        with open(logs[-1], newline="") as fh:
            epochs = [int(r["epoch"]) for r in csv.DictReader(fh) if r.get("epoch") not in (None, "")]
    except (OSError, ValueError, KeyError):
        return 0
    return max(epochs) + 1 if epochs else 0


def _md_fraction(root: Path) -> float | None:
    """Fraction of the integrator steps done over the MD runs under ``root`` (None: no run there yet)."""
    from phonion.chain.stages import run_steps_done

    done = total = 0
    for rec_path in root.glob("*/run.json"):
        s = (_json(rec_path) or {}).get("settings") or {}
        n = int(s.get("steps", 0)) + int(s.get("equilibration_steps", 0))
        total += n
        done += run_steps_done(rec_path.parent, n)
    return done / total if total else None


def learn_phase(learn_dir: Path, size: int, epochs_first: int, epochs_later: int) -> tuple[int, str, float] | None:
    """(round, phase, fraction done) of the learn stage in ``learn_dir``, or None before round 0 starts."""
    rounds = sorted(learn_dir.glob("round_[0-9][0-9][0-9]"))
    if not rounds:
        return None
    rd = rounds[-1]
    rnd = int(rd.name.split("_")[1])
    gate = _md_fraction(rd / "validation" / "md")
    if gate is not None:
        return rnd, "the gate's validation MD", gate
    members = sorted(rd.glob("member_*"))
    if members:
        want = size * (epochs_first if rnd == 0 else epochs_later)
        return rnd, f"training {size} members", min(1.0, sum(_epochs_done(m) for m in members) / max(want, 1))
    picked = _json(rd / "picked.json")
    if isinstance(picked, list) and picked:
        from phonion.workflows.learn_steps import _frames_in

        n = sum(len(_frames_in(f)) for f in rd.glob("labelled_*.extxyz"))
        return rnd, "labelling", min(1.0, n / len(picked))
    explore = _md_fraction(rd / "explore")
    return rnd, "exploring", 0.0 if explore is None else explore


class LearnProgress(Ticker):
    """The progress thread of the learn stage (module docstring); a context manager."""

    prefix = "phonion chain: "

    def __init__(self, learn_dir, settings: dict, every_s: float, enabled: bool = True):
        super().__init__(every_s, enabled)
        learn, train = settings["learn"], settings["train"]
        self.dir = Path(learn_dir)
        self.size = int(learn.get("committee", {}).get("size", 3))
        self.epochs = (int(train.get("trainer", {}).get("max_epochs", 1)),
                       int(learn.get("finetune", {}).get("max_epochs", 1)))
        r = learn.get("rounds", {})
        self.rounds = (int(r.get("min_rounds", 0)), int(r.get("max_rounds", 1)))
        self._seen: tuple | None = None  # (round, phase, fraction, time) when the current phase was first seen

    def line(self, now: float, t0: float) -> str | None:
        from phonion.chain.stages import eta_text

        ph = learn_phase(self.dir, self.size, *self.epochs)
        if ph is None:
            return None
        rnd, phase, f = ph
        if self._seen is None or self._seen[:2] != (rnd, phase):
            self._seen = (rnd, phase, f, now)
        f0, since = self._seen[2], self._seen[3]
        left = (now - since) * (1 - f) / (f - f0) if f > f0 else None
        eta = eta_text(left, "phase ETA")
        lo, hi = self.rounds
        plan = f"gate after {lo}–{hi} rounds" if lo != hi else f"gate after round {hi}"
        return (f"learn: round {rnd} ({plan}): {phase}, {100 * f:.0f} %, {eta}; "
                f"stage {(now - t0) / 60:.0f} min so far")

    def status(self, elapsed_s: float) -> str | None:
        return self.line(elapsed_s, 0.0)
