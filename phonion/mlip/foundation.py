"""``model.foundation``: a local model file or a foundation-model name that mace-torch knows.

Names are mace's own: the MACE-MP / MPA / OMAT / MATPES / MH families (``medium-mpa-0``, ``small-omat-0``,
``medium``, ... — the keys of ``mace.calculators.foundations_models.mace_mp_urls``) and MACE-OFF23 as
``mace_run_train`` spells it (``small_off``, ``medium_off``, ``large_off``). A name resolves to the file
mace's own loader caches it in (``mace.tools.utils.get_cache_dir()``, i.e. ``$XDG_CACHE_HOME/mace`` or
``~/.cache/mace``); when that file is not there mace's downloader is asked (no home-made downloader
here), and when that fails (offline) the error names the model, the file mace expects and the folder to
put it in. ``cached_foundation(name)`` says, without any download, whether a name is usable now (the
chain uses it to default to fine-tuning only when the model is cached).

Checks before training: the foundation's dtype must be the run's ``dtype`` (``check_foundation_dtype``):
mace_run_train silently casts the foundation to ``--default_dtype``; a float32 model fine-tuned in
float64 then starts from rounded weights and the reverse loses precision, so phonion stops and asks
(``model.foundation_dtype: convert`` casts, as mace does).
"""

from __future__ import annotations

import os
from pathlib import Path

#: mace_run_train's spelling of the MACE-OFF23 sizes
OFF_NAMES = {"small_off": "small", "medium_off": "medium", "large_off": "large"}


def known_names() -> list[str]:
    """Every foundation-model name mace-torch knows (MP families and MACE-OFF23)."""
    from mace.calculators.foundations_models import mace_mp_urls

    return sorted(mace_mp_urls) + sorted(OFF_NAMES)


def expected_file(name: str) -> Path:
    """Where mace's loader keeps the model called ``name`` (the same naming as mace's downloaders)."""
    from mace.calculators import foundations_models as fm
    from mace.tools.utils import get_cache_dir

    if name in OFF_NAMES:
        url = fm.mace_off_urls[OFF_NAMES[name]]
        return Path(get_cache_dir()) / os.path.basename(url).split("?")[0]
    if name == "medium-mpa-0" and os.path.isfile(fm.local_model_path):
        return Path(fm.local_model_path)
    url = fm.mace_mp_urls[name]
    return Path(get_cache_dir()) / "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")


def source_url(name: str) -> str:
    """The address mace's loader downloads ``name`` from."""
    from mace.calculators import foundations_models as fm

    return fm.mace_off_urls[OFF_NAMES[name]] if name in OFF_NAMES else fm.mace_mp_urls[name]


def cached_foundation(spec: str | None) -> str | None:
    """The file of ``spec`` (a path or a mace name) if it is on disk now; never downloads."""
    if spec is None:
        return None
    if Path(spec).is_file():
        return str(spec)
    if spec in known_names() and expected_file(spec).is_file():
        return str(expected_file(spec))
    return None


def resolve_foundation(spec: str) -> str:
    """The model file for ``model.foundation``: the path itself, or mace's cached file for a name
    (downloaded by mace's own loader when it can be). A ValueError otherwise, naming what to do."""
    path = Path(spec)
    if path.is_file():
        return str(path)
    names = known_names()
    if spec not in names:
        if path.suffix or os.sep in spec:
            raise ValueError(f"model.foundation: {spec}: no such file")
        raise ValueError(f"model.foundation: {spec!r} is neither a file nor a foundation model mace-torch "
                         f"knows ({', '.join(names)}); give a path to a .model file or one of these names")
    target = expected_file(spec)
    if target.is_file():
        return str(target)
    try:
        import contextlib
        import sys

        from mace.calculators import foundations_models as fm

        with contextlib.redirect_stdout(sys.stderr):  # mace prints download progress
            if spec in OFF_NAMES:
                fm.mace_off(model=OFF_NAMES[spec], device="cpu", return_raw_model=True)
                got = target
            else:
                got = fm.download_mace_mp_checkpoint(spec)
    except Exception as exc:  # noqa: BLE001 - offline: URLError, timeouts, RuntimeError from mace
        raise ValueError(f"model.foundation: the foundation model {spec!r} is not cached and mace-torch could "
                         f"not download it ({type(exc).__name__}: {exc}); mace expects the file {target.name} "
                         f"in {target.parent} — download {source_url(spec)} there under that name (or set "
                         "XDG_CACHE_HOME), or give model.foundation=path/to/file.model") from None
    if not Path(got).is_file():
        raise ValueError(f"model.foundation: mace-torch did not leave {target} for {spec!r}; put the file there")
    return str(got)


def model_dtype(model) -> str:
    """"float64" or "float32": the dtype of the model's parameters."""
    import torch

    return "float64" if next(model.parameters()).dtype == torch.float64 else "float32"


def check_foundation_dtype(model, dtype: str, where: str) -> None:
    """The foundation must be stored in the run's dtype (a ValueError naming both and the fixes)."""
    have = model_dtype(model)
    if have != dtype:
        raise ValueError(f"model.foundation: {where} is stored in {have} but the run trains in {dtype}; set "
                         f"dtype={have} (fine-tune in the foundation's precision) or model.foundation_dtype=convert "
                         "(cast it to the run's dtype, as mace_run_train does)")
