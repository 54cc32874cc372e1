"""From training data to mace (:mod:`phonion.mlip.data` re-exports these): the REF_* label keys, the element
check against a model, mace's KeySpecification and AtomicData graphs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ase.data import chemical_symbols

if TYPE_CHECKING:
    from phonion.mlip.data import Dataset

#: keys under which atoms carry the reference labels (mace's recommended REF_* names)
KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}


def check_elements(data_zs, model_zs, dataset: Dataset | None = None, what: str = "the model",
                   sources: dict | None = None) -> None:
    """Every element of the data must be known to the model; the error names files and elements.
    ``sources``: file name → atomic numbers in it, to name the files (as ``dataset``'s runs do)."""
    missing = sorted({int(z) for z in data_zs} - {int(z) for z in model_zs})
    if missing:
        where = ""
        if dataset is not None:
            names = {chemical_symbols[z] for z in missing}
            where = " (in " + "; ".join(r.name for r in dataset.runs if names & set(r.elements)) + ")"
        elif sources:
            files = [str(f) for f, zs in sources.items() if set(missing) & {int(z) for z in zs}]
            where = " (in " + "; ".join(files) + ")" if files else ""
        raise ValueError(f"{what} has no {', '.join(chemical_symbols[z] for z in missing)}{where}; it knows "
                         f"{', '.join(chemical_symbols[int(z)] for z in model_zs)}. Train from scratch or "
                         "use a model that covers these elements")


def keyspec():
    """mace's KeySpecification for the REF_* labels (``KEYS``)."""
    from mace.data import KeySpecification

    return KeySpecification(info_keys={"energy": KEYS["energy"], "stress": KEYS["stress"]},
                            arrays_keys={"forces": KEYS["forces"]})


def to_atomic_data(atoms_list, zs, r_max: float, heads=None, head_name: str = "Default") -> list:
    """Graphs for mace: ``config_from_atoms`` → ``AtomicData.from_config`` (torch default dtype);
    ``head_name``: the mace head the frames train (``pt_head`` for replay frames)."""
    from mace import data as mdata
    from mace.tools import AtomicNumberTable

    spec, table = keyspec(), AtomicNumberTable(list(zs))
    return [mdata.AtomicData.from_config(mdata.config_from_atoms(a, spec, head_name=head_name), z_table=table,
                                         cutoff=float(r_max), heads=heads) for a in atoms_list]
