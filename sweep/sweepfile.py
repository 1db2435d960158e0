"""The sweep file: read with tomllib, every key validated (one-line SweepFileError), expanded to points.

    name = "smoke"
    stages = ["compress", "cycles"]           # of STAGE_ORDER; rtl needs compress
    [fixed]                                   # settings of every point (a point's own override them)
    epochs = 5
    [axes]                                    # the grid: every combination of these values
    alpha = [1, 8]
    [[points]]                                # explicit points, each crossed with the grid
    label = "colcomb"
    method = "colcomb"
    [sample]                                  # optional: mode = "grid" (default) or "random"
    mode = "random"; n = 10; seed = 0
    [[pareto]]                                # objectives, two columns of the results table
    x = "cycles"; y = "int_accuracy"

Settings are the front-end's Options (software/frontend/compress.py) plus the hardware and build
settings below. Types, names and enumerations are checked here (a malformed file stops the sweep
before anything runs); ranges are checked per point by the stages, and a point whose
configuration is refused fails with that one line while the rest of the sweep goes on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import tomllib

from fpga.boards import BOARD_NAMES
from software.frontend.compress import METHODS, QUANTS, Options
from spec import MACS

from .pages import PAGES

STAGE_ORDER = ("compress", "cycles", "rtl", "fpga")
# A stage's prerequisites among the listed stages (fpga builds an array configuration alone).
STAGE_NEEDS = {"cycles": ("compress",), "rtl": ("compress",)}
SAMPLE_MODES = ("grid", "random")


class SweepFileError(ValueError):
    """A malformed sweep file; the message is one line naming the file and the key."""


@dataclasses.dataclass(frozen=True)
class Setting:
    kind: str                   # int, float, str, bool, pair (two ints), optional_int, optional_float
    default: object
    choices: tuple | None = None
    help: str = ""


def _options_settings():
    kinds = {"model": "str", "weights": "optional_str", "data": "str", "trust_pickle": "bool", "method": "str", "alpha": "int", "gamma": "float",
             "sparsity": "float", "nm": "pair", "tile_size": "optional_int", "quant": "str", "term_group": "int",
             "weight_terms": "float", "data_terms": "int", "rows": "int", "cols": "optional_int",
             "max_batch": "int", "epochs": "optional_int", "finetune_epochs": "int", "lr": "float", "seed": "int"}
    choices = {"method": METHODS, "quant": tuple(QUANTS)}
    settings = {}
    for field in dataclasses.fields(Options):
        if field.name in ("progress", "input_shape"):     # input_shape: a tuple, not a sweep setting yet
            continue
        if field.name not in kinds:
            raise RuntimeError(f"sweep/sweepfile.py: Options.{field.name} has no sweep setting kind")
        settings[field.name] = Setting(kinds[field.name], field.default, choices.get(field.name))
    return settings


SETTINGS = {
    **_options_settings(),
    "label": Setting("str", "", help="the point's name in tables and plots"),
    "mac": Setting("str", "int", tuple(MACS), "MAC style of the generated array (rtl, fpga)"),
    "board": Setting("str", "icebreaker", BOARD_NAMES, "board of the fpga stage"),
    "dsp": Setting("str", "auto", help="fpga: auto, on, off or a number of DSP cells"),
    "clock_mhz": Setting("optional_float", None, help="fpga: array clock from the PLL (default: the board's)"),
    "baud": Setting("int", 115200, help="fpga: host link baud rate"),
    "fpga_time_limit": Setting("optional_float", None, help="fpga: seconds before a build is stopped"),
    "rtl_images": Setting("int", 450, help="rtl: test images run through the Verilog (0: no RTL check of this point)"),
}
# Settings that only name a point: they are not part of any stage's configuration.
NAMING = ("label",)


def _check_value(where, name, value):
    setting = SETTINGS[name]
    kind = setting.kind
    if kind.startswith("optional_") and value == "none":
        return None     # TOML has no null: "none" asks for the default behaviour
    base = kind.removeprefix("optional_")
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str),
          "bool": isinstance(value, bool),
          "pair": isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)}[base]
    if not ok:
        wanted = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                  "pair": "two integers, e.g. [2, 4]"}[base]
        extra = ' or "none"' if kind.startswith("optional_") else ""
        raise SweepFileError(f"{where}: {name} must be {wanted}{extra}, not {value!r}")
    if setting.choices is not None and value not in setting.choices:
        raise SweepFileError(f"{where}: {name} {value!r} is not one of {', '.join(map(str, setting.choices))}")
    if name == "dsp":
        from fpga.build import parse_dsp
        try:
            parse_dsp(value)
        except ValueError as e:
            raise SweepFileError(f"{where}: {e}") from None
    if base == "float":
        return float(value)
    if base == "pair":
        return tuple(value)
    return value


def _table(where, value):
    if not isinstance(value, dict):
        raise SweepFileError(f"{where} must be a table")
    return value


def _settings(where, table, *, allow_label=False):
    out = {}
    for name, value in table.items():
        if name not in SETTINGS or (name == "label" and not allow_label):
            known = ", ".join(n for n in SETTINGS if allow_label or n != "label")
            raise SweepFileError(f"{where}: unknown setting {name!r} (known: {known})")
        out[name] = _check_value(where, name, value)
    return out


@dataclasses.dataclass(frozen=True)
class Point:
    index: int
    settings: dict          # every setting of SETTINGS, defaults filled in

    @property
    def label(self):
        return self.settings["label"]

    @property
    def point_id(self):
        """Names the point by its configuration: the same point in another sweep has the same id."""
        text = json.dumps({k: v for k, v in self.settings.items() if k not in NAMING}, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def options(self) -> Options:
        fields = {f.name for f in dataclasses.fields(Options)}
        return Options(**{k: v for k, v in self.settings.items() if k in fields}, progress=False)


@dataclasses.dataclass(frozen=True)
class Objective:
    x: str
    y: str


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    name: str
    path: str
    stages: tuple
    points: tuple
    pareto: tuple
    page: str | None


TOP_KEYS = ("name", "stages", "fixed", "axes", "points", "sample", "pareto", "page")


def load(path) -> SweepPlan:
    """Read, validate and expand a sweep file; SweepFileError (one line) if anything is wrong."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SweepFileError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepFileError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepFileError(f"{path}: not valid TOML ({e})") from None
    return parse(data, path)


def parse(data: dict, path="<sweep>") -> SweepPlan:
    from .results import COLUMNS      # the objectives are results columns

    for key in data:
        if key not in TOP_KEYS:
            raise SweepFileError(f"{path}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
    name = data.get("name", "sweep")
    if not isinstance(name, str) or not name or "/" in name:
        raise SweepFileError(f"{path}: name must be a non-empty string without '/', not {name!r}")
    stages = data.get("stages", ["compress", "cycles"])
    if not isinstance(stages, list) or not stages or not all(isinstance(s, str) for s in stages):
        raise SweepFileError(f"{path}: stages must be a non-empty list of names ({', '.join(STAGE_ORDER)})")
    for stage in stages:
        if stage not in STAGE_ORDER:
            raise SweepFileError(f"{path}: unknown stage {stage!r} (known: {', '.join(STAGE_ORDER)})")
        for need in STAGE_NEEDS.get(stage, ()):
            if need not in stages:
                raise SweepFileError(f"{path}: stage {stage!r} needs stage {need!r} in the list")
    if len(set(stages)) != len(stages):
        raise SweepFileError(f"{path}: stages lists a stage twice")
    stages = tuple(s for s in STAGE_ORDER if s in stages)

    fixed = _settings(f"{path}: [fixed]", _table(f"{path}: [fixed]", data.get("fixed", {})), allow_label=True)
    axes = {}
    for name_, values in _table(f"{path}: [axes]", data.get("axes", {})).items():
        where = f"{path}: [axes] {name_}"
        if name_ not in SETTINGS or name_ in NAMING:
            raise SweepFileError(f"{path}: [axes]: unknown setting {name_!r}")
        if not isinstance(values, list) or not values:
            raise SweepFileError(f"{where} must be a non-empty list of values")
        axes[name_] = [_check_value(where, name_, v) for v in values]
        if len(set(map(repr, axes[name_]))) != len(values):
            raise SweepFileError(f"{where} lists a value twice")
        if name_ in fixed:
            raise SweepFileError(f"{path}: {name_!r} is both fixed and an axis")
    raw_points = data.get("points", [{}])
    if not isinstance(raw_points, list) or not raw_points:
        raise SweepFileError(f"{path}: points must be a non-empty array of tables ([[points]])")
    explicit = []
    for i, p in enumerate(raw_points):
        where = f"{path}: [[points]] #{i + 1}"
        settings = _settings(where, _table(where, p), allow_label=True)
        for name_ in settings:
            if name_ in axes:
                raise SweepFileError(f"{where}: {name_!r} is also an axis")
        explicit.append(settings)

    defaults = {name_: s.default for name_, s in SETTINGS.items()}
    combos = list(itertools.product(*axes.values())) if axes else [()]
    points, seen = [], set()
    for own in explicit:
        for combo in combos:
            settings = {**defaults, **fixed, **own, **dict(zip(axes, combo))}
            if not settings["label"]:
                settings["label"] = " ".join(f"{k}={_show(v)}" for k, v in {**own, **dict(zip(axes, combo))}.items()
                                             if k != "label") or "point"
            point = Point(index=len(points), settings=settings)
            if point.point_id in seen:
                raise SweepFileError(f"{path}: point {point.label!r} is listed twice")
            seen.add(point.point_id)
            points.append(point)

    sample = _table(f"{path}: [sample]", data.get("sample", {}))
    for key in sample:
        if key not in ("mode", "n", "seed"):
            raise SweepFileError(f"{path}: [sample]: unknown key {key!r} (known: mode, n, seed)")
    mode = sample.get("mode", "grid")
    if mode not in SAMPLE_MODES:
        raise SweepFileError(f"{path}: [sample] mode must be one of {', '.join(SAMPLE_MODES)}, not {mode!r}")
    if mode == "random":
        n, seed = sample.get("n"), sample.get("seed", 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise SweepFileError(f"{path}: [sample] n must be a positive integer, not {n!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise SweepFileError(f"{path}: [sample] seed must be an integer, not {seed!r}")
        chosen = sorted(random.Random(seed).sample(range(len(points)), min(n, len(points))))
        points = [dataclasses.replace(points[i], index=j) for j, i in enumerate(chosen)]
    elif "n" in sample or "seed" in sample:
        raise SweepFileError(f"{path}: [sample] n and seed are for mode = \"random\"")

    pareto = []
    raw_pareto = data.get("pareto", [])
    if not isinstance(raw_pareto, list):
        raise SweepFileError(f"{path}: pareto must be an array of tables ([[pareto]] with x and y)")
    for i, objective in enumerate(raw_pareto):
        where = f"{path}: [[pareto]] #{i + 1}"
        objective = _table(where, objective)
        if set(objective) != {"x", "y"}:
            raise SweepFileError(f"{where} needs exactly the keys x and y")
        for axis in ("x", "y"):
            column = objective[axis]
            if column not in COLUMNS or COLUMNS[column].better is None:
                ranked = ", ".join(n for n, c in COLUMNS.items() if c.better)
                raise SweepFileError(f"{where}: {axis} = {column!r} is not an objective (choose from {ranked})")
            if COLUMNS[column].stage not in stages:
                raise SweepFileError(f"{where}: {column!r} comes from stage {COLUMNS[column].stage!r}, "
                                     "which the sweep does not run")
        pareto.append(Objective(objective["x"], objective["y"]))

    page = data.get("page")
    if page is not None and page not in PAGES:
        raise SweepFileError(f"{path}: page must be one of {', '.join(PAGES)}, not {page!r}")
    return SweepPlan(name=name, path=path, stages=stages, points=tuple(points), pareto=tuple(pareto), page=page)


def _show(value):
    if isinstance(value, tuple):
        return ":".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
