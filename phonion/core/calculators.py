"""The calculator SPEC: the one place where a string becomes an ASE calculator.

Every phonion command that needs forces takes ``--calculator SPEC``:

==========================  ===============================================================
SPEC                        calculator
==========================  ===============================================================
``chgnet``                  CHGNet, pretrained weights shipped in its wheel (offline);
                            the default *surrogate reference* when no DFT is at hand
``chgnet:<path>``           CHGNet from a saved model file
``emt``                     ASE's EMT (metals + H, C, N, O only; fast tests)
``mace:<path to .model>``   mace-torch's own ``MACECalculator`` on a trained model file
``mace:<a>,<b>,<c>``        a *committee*: mace's ``MACECalculator`` over several model files
                            (globs allowed, e.g. ``mace:train/member*/model.model``); the
                            mean energy / forces / stress drive MD, and ``results`` also hold
                            the members' spread (``forces_var``, ``energy_var``: the uncertainty)
``module:function``         any importable function returning an ASE calculator
                            (how a VASP user plugs in ``ase.calculators.vasp.Vasp``)
==========================  ===============================================================

Options follow a ``?``: ``mace:model.model?device=cuda&dtype=float32``. ``device`` defaults
to CUDA when available, else CPU; ``dtype`` (mace) defaults to float64 on CPU, float32 on GPU.
``chgnet?stress=false`` predicts energy and forces only: CHGNet's own calculator always adds the
stress, a second backward pass over the strain that costs ~40 % of a step and that NVT MD never
reads (the surrogate reference of the quick demo uses it; the frames then carry no stress).
``mace:M?dtype=float32&compile_mode=default`` runs the model through ``torch.compile`` (mace's own
``compile_mode``; always float32: mace rebuilds the model for compilation in float32, so
``dtype=float64`` with it is refused): with the kept graph (``skin``, below) the demo's model then takes
5.9 ms an MD step on one CPU core against 11.1 (float32 eager) and 14.6 (float64 eager); the first
call compiles (~60 s with a cold inductor cache, ~5 s warm; once per process: later runs of a worker
reuse it) and needs a C compiler. Forces agree with eager to ~1e-6 eV/Å (float32 round-off);
``scripts/bench_md_engines.py`` measures it on the device at hand.
``skin`` (mace, Å, default 0.5) keeps mace's input graph between MD steps as a Verlet list with that
skin, rebuilt only when an atom moved half the skin (phonion.core.mace_graph): the same forces as
mace's graph built at every call, which ``skin=0`` restores; 1.1-1.5× faster MD on a CPU (the 80-atom
cell on one core: float64 eager 16.5 → 14.6 ms a step, float32 compiled 8.6 → 5.9).
``module:function`` receives the options as keyword arguments (strings).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from phonion.core.mace_graph import DEFAULT_SKIN_A, verlet_mace_calculator

BUILTINS = ("chgnet", "emt", "mace")
#: torch.compile modes mace's ``compile_mode`` accepts
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CalculatorSpecError(ValueError):
    """A SPEC that cannot be turned into a calculator; the message says what is wrong."""


@dataclass(frozen=True)
class CalculatorSpec:
    """A parsed SPEC: ``kind`` is 'chgnet' | 'emt' | 'mace' | 'python'."""

    kind: str
    target: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def label(self) -> str:
        """Human label for reports: what produced the forces."""
        if self.kind == "chgnet":
            return "CHGNet (pretrained)" if self.target is None else f"CHGNet ({self.target})"
        if self.kind == "emt":
            return "ASE EMT"
        if self.kind == "mace":
            files = committee_files(self.target) if self.target else []
            if len(files) > 1:
                return f"MACE committee ({len(files)} models: {', '.join(files)})"
            return f"MACE ({self.target})"
        return f"{self.target}"


def parse_spec(spec: str) -> CalculatorSpec:
    """Parse a SPEC string without building anything (cheap; validates the form)."""
    if not isinstance(spec, str) or not spec.strip():
        raise CalculatorSpecError("empty calculator SPEC; use chgnet, emt, mace:<model>, or module:function")
    text = spec.strip()
    body, _, query = text.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    head, sep, tail = body.partition(":")
    name = head.lower()
    if name in ("chgnet", "emt") and not sep:
        return CalculatorSpec(name, None, options, text)
    if name == "chgnet":
        return CalculatorSpec("chgnet", tail, options, text)
    if name == "mace":
        if not tail:
            raise CalculatorSpecError(f"{text!r}: mace needs a model file, e.g. mace:run/model.model")
        return CalculatorSpec("mace", tail, options, text)
    if sep and head and tail:
        return CalculatorSpec("python", f"{head}:{tail}", options, text)
    raise CalculatorSpecError(
        f"{text!r} is not a calculator SPEC; use chgnet, emt, mace:<path to .model>, "
        "or module:function returning an ASE calculator")


def short_label(spec: str) -> str:
    """A SPEC as a reader wants it in a title: a committee becomes ``MACE committee of N (DIR)``."""
    import os

    try:
        parsed = parse_spec(spec)
    except CalculatorSpecError:
        return str(spec)
    if parsed.kind == "mace":
        files = committee_files(parsed.target)
        if len(files) > 1:
            common = os.path.commonpath([os.path.abspath(f) for f in files])
            return f"MACE committee of {len(files)} ({common})"
        return f"mace:{parsed.target}"
    return parsed.text


def default_device() -> str:
    """'cuda' when a CUDA GPU is visible to torch, else 'cpu'."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # torch is a dependency, but EMT users should not need it
        return "cpu"


def resolve_calculator(spec: str | CalculatorSpec, *, device: str | None = None,
                       dtype: str | None = None):
    """Build the ASE calculator a SPEC names.

    Parameters
    ----------
    spec : SPEC string (see module docstring) or a parsed ``CalculatorSpec``
    device : 'cpu' | 'cuda' | 'cuda:N'; overrides the SPEC's ``device`` option
    dtype : 'float32' | 'float64' for MACE; overrides the SPEC's ``dtype`` option

    Returns
    -------
    ase.calculators.calculator.Calculator
    """
    parsed = spec if isinstance(spec, CalculatorSpec) else parse_spec(spec)
    opts = dict(parsed.options)
    device = device or opts.pop("device", None) or default_device()
    opts.pop("device", None)
    builder = _BUILDERS[parsed.kind]
    dtype = dtype or opts.pop("dtype", None)
    if parsed.kind == "mace":
        check_mace_options(parsed)
    if parsed.kind == "mace" and opts.get("compile_mode"):
        dtype = dtype or "float32"  # what mace's compiled model computes in (check_mace_options)
        # torch.compile pays 10-40 s on the first call (CPU, the demo's model); one compiled calculator
        # per process serves every later run of a worker (the MD driver reset()s it between runs, which
        # leaves a MACECalculator in a fresh one's state)
        key = (parsed.text, str(device), dtype)
        if key not in _COMPILED:
            _COMPILED[key] = builder(parsed, device, dtype, opts)
        return _COMPILED[key]
    return builder(parsed, device, dtype, opts)


def check_mace_options(parsed: CalculatorSpec) -> None:
    """CalculatorSpecError for a mace SPEC option value that cannot work (before any model loads)."""
    opts = parsed.options
    if opts.get("dtype", "float64") not in ("float32", "float64"):
        raise CalculatorSpecError(f"{parsed.text!r}: dtype must be float32 or float64, got {opts['dtype']!r}")
    if "compile_mode" in opts and opts["compile_mode"] not in COMPILE_MODES:
        raise CalculatorSpecError(f"{parsed.text!r}: compile_mode must be one of {', '.join(COMPILE_MODES)}, "
                                  f"got {opts['compile_mode']!r}")
    if "skin" in opts:
        try:
            skin = float(opts["skin"])
        except ValueError:
            skin = float("nan")
        if not 0 <= skin <= 3:
            raise CalculatorSpecError(f"{parsed.text!r}: skin is the Verlet skin of the kept neighbour list in Å, "
                                      f"0 (mace's own graph at every call) to 3, got {opts['skin']!r}")
    if opts.get("compile_mode") and opts.get("dtype") == "float64":
        raise CalculatorSpecError(f"{parsed.text!r}: compile_mode runs the model in float32 (mace rebuilds the "
                                  f"model for torch.compile in float32: forces come back as float32); drop "
                                  f"dtype=float64 or compile_mode")


#: compiled MACE calculators of this process, by (SPEC, device, dtype)
_COMPILED: dict = {}


def _build_emt(spec, device, dtype, opts):
    from ase.calculators.emt import EMT

    return EMT()


def _build_chgnet(spec, device, dtype, opts):
    try:
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError as exc:
        raise CalculatorSpecError(
            "SPEC 'chgnet' needs the chgnet package: pip install 'phonion[reference]'") from exc
    if spec.target is None:
        model = CHGNet.load(verbose=False)  # weights ship inside the wheel: no download
    else:
        path = Path(spec.target)
        if not path.is_file():
            raise CalculatorSpecError(f"{path}: no such CHGNet model file")
        model = CHGNet.from_file(str(path))
    stress = opts.pop("stress", "true").lower()
    if stress not in ("true", "false"):
        raise CalculatorSpecError(f"{spec.text!r}: stress must be true or false, got {stress!r}")
    if opts:
        raise CalculatorSpecError(f"{spec.text!r}: unknown CHGNet option(s) {', '.join(sorted(opts))} "
                                  "(known: device, stress)")
    if stress == "true":
        return CHGNetCalculator(model=model, use_device=device)

    class CHGNetNoStress(CHGNetCalculator):
        """CHGNet's calculator asked for energy and forces only (task "ef" instead of its fixed
        "efsm"): chgnet has no switch for it, hence this subclass (module docstring)."""

        implemented_properties = ("energy", "free_energy", "forces")

        def calculate(self, atoms=None, properties=None, system_changes=None, task="ef"):
            super().calculate(atoms, properties, system_changes, task="ef")

    return CHGNetNoStress(model=model, use_device=device)


def committee_files(target: str) -> list[str]:
    """The model files of a ``mace:`` target: comma-separated paths, each possibly a glob (sorted)."""
    import glob

    files = []
    for part in (p.strip() for p in str(target).split(",")):
        if not part:
            continue
        matches = sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part]
        files.extend(matches or [part])
    return files


def load_mace_models(files: list[str], device: str = "cpu") -> list:
    """``torch.load`` each MACE model file; a committee must agree on elements and cutoff.

    Raises CalculatorSpecError naming the file (missing, not a MACE model) or the members that
    disagree (elements, r_max): mean forces of models with other species tables or cutoffs are
    not a committee.
    """
    import mace  # noqa: F401  (mace before e3nn with torch 2.13)
    import torch

    models = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise CalculatorSpecError(f"{path}: no such MACE model file")
        try:
            model = torch.load(path, map_location=device, weights_only=False)
        except Exception as exc:  # noqa: BLE001 - torch.load / pickle errors: say which file
            raise CalculatorSpecError(f"{path}: cannot load as a MACE model: {exc}") from exc
        if not all(hasattr(model, a) for a in ("atomic_numbers", "r_max")):
            raise CalculatorSpecError(f"{path}: not a MACE model ({type(model).__name__})")
        models.append(model)
    if len(models) > 1:
        from ase.data import chemical_symbols

        def describe(m):
            zs = sorted(int(z) for z in m.atomic_numbers)
            return [chemical_symbols[z] for z in zs], round(float(m.r_max), 6)

        first = describe(models[0])
        for f, m in zip(files[1:], models[1:]):
            els, r_max = describe(m)
            if els != first[0]:
                raise CalculatorSpecError(f"committee members disagree on elements: {files[0]} has "
                                          f"{', '.join(first[0])}, {f} has {', '.join(els)}")
            if r_max != first[1]:
                raise CalculatorSpecError(f"committee members disagree on r_max: {files[0]} has "
                                          f"{first[1]:g} Å, {f} has {r_max:g} Å")
    return models


def _build_mace(spec, device, dtype, opts):
    files = committee_files(spec.target)
    if not files:
        raise CalculatorSpecError(f"{spec.text!r}: no model file given")
    dtype = dtype or ("float32" if str(device).startswith("cuda") else "float64")
    if dtype not in ("float32", "float64"):
        raise CalculatorSpecError(f"{spec.text!r}: dtype must be float32 or float64, got {dtype!r}")
    skin = float(opts.pop("skin", DEFAULT_SKIN_A))
    models = load_mace_models(files, device=device)
    # mace must be imported before e3nn with torch 2.13 (weights-only unpickling)
    from mace.calculators import MACECalculator

    try:
        if skin > 0:
            return verlet_mace_calculator(skin=skin, models=models, device=device, default_dtype=dtype, **opts)
        return MACECalculator(models=models, device=device, default_dtype=dtype, **opts)
    except Exception as exc:  # noqa: BLE001 - say which file(s)
        raise CalculatorSpecError(f"{', '.join(files)}: cannot build a MACE calculator: {exc}") from exc


def _build_python(spec, device, dtype, opts):
    module_name, _, func_name = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CalculatorSpecError(f"{spec.text!r}: cannot import module {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise CalculatorSpecError(f"{spec.text!r}: {module_name} has no function {func_name!r}")
    try:
        calc = func(**opts)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's function: name the SPEC
        raise CalculatorSpecError(f"{spec.text!r}: calling {func_name}({', '.join(opts)}) failed "
                                  f"({type(exc).__name__}: {exc}); give a module:function that takes "
                                  "no arguments (or the SPEC's ?key=value options) and returns an ASE "
                                  "calculator") from exc
    if not callable(getattr(calc, "get_forces", None)):
        raise CalculatorSpecError(f"{spec.text!r}: {func_name}() returned {type(calc).__name__}, "
                                  "not an ASE calculator (no get_forces); give a "
                                  "module:function that returns one")
    return calc


_BUILDERS = {"emt": _build_emt, "chgnet": _build_chgnet, "mace": _build_mace, "python": _build_python}


def calculator_metadata(spec: str | CalculatorSpec, *, surrogate_reference: bool = False) -> dict:
    """What to write into a trajectory's metadata about where its forces came from."""
    parsed = spec if isinstance(spec, CalculatorSpec) else parse_spec(spec)
    meta = {"calculator_spec": parsed.text, "calculator": parsed.label}
    if surrogate_reference:
        meta["reference_kind"] = "surrogate reference"
        meta["reference_note"] = (f"forces and energies from {parsed.label}, standing in for DFT; "
                                  "not DFT")
    return meta

