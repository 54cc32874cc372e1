"""The learn stage's progress line: phase and fraction read from what the work leaves on disk, and an ETA
from the rate since the phase started."""

import json

from phonion.chain.learn_progress import LearnProgress, learn_phase


def _member(d, epochs):
    log = d / "logs" / "csv" / "version_0"
    log.mkdir(parents=True)
    rows = ["epoch,step,val_loss", ",0,"] + [f"{e},{10 * e},1.0" for e in range(epochs)]
    (log / "metrics.csv").write_text("\n".join(rows) + "\n")


def _run(d, steps, eq, status, checkpoint=None):
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"status": status, "settings": {"steps": steps, "equilibration_steps": eq}}))
    if checkpoint is not None:
        (d / "run.log").write_text(f"12:00:00 INFO checkpoint: step {checkpoint}, 10 frames\n")


def test_phases_and_fractions(tmp_path):
    assert learn_phase(tmp_path, 3, 20, 10) is None  # nothing started
    r0 = tmp_path / "round_000"
    for k, e in enumerate((20, 10, 0)):
        _member(r0 / f"member_{k}", e)
    assert learn_phase(tmp_path, 3, 20, 10) == (0, "training 3 members", 0.5)  # 30 of 60 epochs
    r1 = tmp_path / "round_001"
    _run(r1 / "explore" / "T900", 300, 100, "complete")
    _run(r1 / "explore" / "T1000", 300, 100, "running", checkpoint=200)
    assert learn_phase(tmp_path, 3, 20, 10) == (1, "exploring", 0.75)  # (400 + 200) / 800 steps
    _member(r1 / "member_0", 5)  # fine-tuning: 5 of 3 × 10 epochs
    assert learn_phase(tmp_path, 3, 20, 10)[1:] == ("training 3 members", 5 / 30)
    _run(r1 / "validation" / "md" / "T1300", 800, 200, "invalid")
    assert learn_phase(tmp_path, 3, 20, 10) == (1, "the gate's validation MD", 1.0)


def test_eta_from_the_rate_since_the_phase_started(tmp_path):
    settings = {"learn": {"committee": {"size": 2}, "finetune": {"max_epochs": 10},
                          "rounds": {"min_rounds": 1, "max_rounds": 2}},
                "train": {"trainer": {"max_epochs": 10}}}
    p = LearnProgress(tmp_path, settings, 30.0, enabled=False)
    assert p.line(0.0, 0.0) is None
    _member(tmp_path / "round_000" / "member_0", 2)
    assert "phase ETA unknown yet" in p.line(10.0, 0.0)  # first sight of the phase: 10 % done
    (tmp_path / "round_000" / "member_0" / "logs" / "csv" / "version_0" / "metrics.csv").unlink()
    _member(tmp_path / "round_000" / "member_1", 0)
    import shutil

    shutil.rmtree(tmp_path / "round_000" / "member_0")
    _member(tmp_path / "round_000" / "member_0", 6)  # 30 % at t = 70 s: 20 % in 60 s → 70 % in 210 s
    line = p.line(70.0, 0.0)
    assert "round 0 (gate after 1–2 rounds): training 2 members, 30 %, phase ETA 4 min" in line
