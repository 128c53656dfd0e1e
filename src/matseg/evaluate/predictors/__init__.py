"""What the evaluators run: a small predictor interface and a registry of named predictors.

Two kinds of predictor (paper §4.1: "every segmentation approach, soft or hard, can be
converted to predict the similarity between two points"):

* :class:`DescriptorPredictor` — ``describe(image)``: ``(H, W, 3)`` uint8 RGB in, ``(H, W, C)``
  float32 per-pixel descriptors out (any scale; the metrics L2-normalise them). Point
  similarity = cosine similarity of the points' mean descriptors.
* :class:`PointPredictor` — point-conditioned models such as SAM: ``set_image(image)`` once,
  then ``similarity(positive, negative)`` -> ``(H, W)`` float32 map (higher = more similar to
  the positive points) for ``num_points`` prompt points (half positive, half negative).

A predictor module registers its factories on import with :func:`register_predictor`; the
registry imports the modules it knows about lazily (``_KNOWN_MODULES``), so adding a
predictor = one module + one line there. User code can register its own predictors before
calling :func:`create_predictor` (or ``matseg eval ... --import mypackage.mypredictor``).

Names and option keys are British (``colour``, ``centre``); the registry also accepts their
American spellings (``--predictor color``, ``--predictor-arg center=false``) and resolves them
to the British name, which is what listings, results and output folders show
(:func:`canonical_predictor_name`, :func:`canonical_predictor_args`, :func:`predictor_aliases`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

import numpy as np

__all__ = [
    "Predictor",
    "DescriptorPredictor",
    "PointPredictor",
    "PredictorError",
    "PredictorUnavailable",
    "register_predictor",
    "create_predictor",
    "available_predictors",
    "canonical_predictor_name",
    "canonical_predictor_args",
    "predictor_aliases",
    "check_image",
]


class PredictorError(ValueError):
    """Unknown predictor name or bad arguments; the message lists the valid choices."""


class PredictorUnavailable(RuntimeError):
    """A predictor cannot run here (missing package or checkpoint); the message says what to install or pass."""


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a predictor input: ``(H, W, 3)`` uint8 RGB; raises ``ValueError`` naming what was received."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"predictors take an (H, W, 3) uint8 RGB image, got {got}")
    return image


class Predictor:
    """Base of every predictor. ``name`` is the registry name; :meth:`params` is recorded in results."""

    name: str = ""
    point_conditioned: bool = False

    def params(self) -> dict:
        """The parameters that define this predictor's output (JSON-friendly)."""
        return {}


class DescriptorPredictor(Predictor):
    """Per-pixel descriptors (colour, texture, CNN features, the MatSeg net)."""

    def describe(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(H, W, C)`` float32 descriptors at the image's resolution."""
        raise NotImplementedError


class PointPredictor(Predictor):
    """Point-conditioned similarity maps (SAM-like). ``num_points`` prompt points per query."""

    point_conditioned = True
    num_points: int = 1

    def set_image(self, image: np.ndarray) -> None:
        """Prepare ``image`` (``(H, W, 3)`` uint8 RGB), e.g. compute its embedding once."""
        raise NotImplementedError

    def similarity(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """Map for the current image.

        Args:
            positive: ``(P, 2)`` float ``[x, y]`` points inside the target material (P >= 1).
            negative: ``(Q, 2)`` float ``[x, y]`` points outside it (Q may be 0).

        Returns:
            ``(H, W)`` float32, higher = more likely the same material as the positive points.
        """
        raise NotImplementedError

    @property
    def num_positive(self) -> int:
        """Positive prompt points: 1 of 1, otherwise half (paper §5)."""
        return 1 if self.num_points == 1 else self.num_points // 2

    @property
    def num_negative(self) -> int:
        return self.num_points - self.num_positive


_FACTORIES: dict[str, Callable[..., Predictor]] = {}
_DESCRIPTIONS: dict[str, str] = {}

# name -> module that registers it (imported on first use; keeps torch out of `matseg --help`)
_KNOWN_MODULES: dict[str, str] = {
    "random": "matseg.evaluate.predictors.baselines",
    "colour": "matseg.evaluate.predictors.baselines",
    "texture": "matseg.evaluate.predictors.baselines",
    "sam": "matseg.evaluate.predictors.sam",
    "effnet": "matseg.evaluate.predictors.networks",
    "matseg": "matseg.evaluate.predictors.networks",
}


def register_predictor(name: str, description: str = "") -> Callable:
    """Decorator registering a predictor factory (a class or function returning a :class:`Predictor`).

    The factory's keyword parameters are the predictor's options (``--predictor-arg key=value``).
    """

    def deco(factory: Callable[..., Predictor]) -> Callable[..., Predictor]:
        if not name or not name.replace("-", "_").isidentifier():
            raise ValueError(f"predictor name must be a simple identifier, got {name!r}")
        _FACTORIES[name] = factory
        doc = description or (inspect.getdoc(factory) or "").split("\n", 1)[0]
        _DESCRIPTIONS[name] = doc
        return factory

    return deco


# (American, British) spellings. Substrings, so that inflections and compounds follow
# ("normalized", "gray_world"); a respelling is only used when it names something registered.
_SPELLINGS = (("color", "colour"), ("center", "centre"), ("gray", "grey"), ("normaliz", "normalis"))


def _respell(word: str, pairs) -> str:
    for old, new in pairs:
        word = word.replace(old, new)
    return word


def _british(word: str) -> str:
    return _respell(word, _SPELLINGS)


def _american(word: str) -> str:
    return _respell(word, [(british, american) for american, british in _SPELLINGS])


def _known(name: str) -> bool:
    return name in _FACTORIES or name in _KNOWN_MODULES


def canonical_predictor_name(name: str) -> str:
    """The registered name ``name`` stands for: itself, or the British name of an American
    spelling (``color`` -> ``colour``). Unknown names come back unchanged (the caller reports them)."""
    if _known(name):
        return name  # an exact registration wins, even if it is spelled the American way
    british = _british(name)
    return british if _known(british) else name


def predictor_aliases(name: str) -> list[str]:
    """Other spellings that resolve to the registered ``name`` (``colour`` -> ``["color"]``)."""
    american = _american(name)
    if american == name or _known(american) or _british(american) != name:
        return []
    return [american]


def _option_keys(name: str, kwargs: dict, accepted: dict) -> dict:
    """``kwargs`` with American spellings of accepted option keys replaced by the British key."""
    resolved: dict = {}
    given_as: dict[str, str] = {}
    for key, value in kwargs.items():
        british = _british(key)
        canonical = british if key not in accepted and british in accepted else key
        if canonical in resolved:
            first = given_as[canonical]
            raise PredictorError(f"predictor {name!r}: option {canonical} given twice (as {first} and {key})")
        resolved[canonical], given_as[canonical] = value, key
    return resolved


def _load(name: str) -> None:
    module = _KNOWN_MODULES.get(name)
    if module and name not in _FACTORIES:
        importlib.import_module(module)


def available_predictors() -> list[str]:
    """Every predictor name: registered ones and those of known modules (sorted)."""
    return sorted(set(_FACTORIES) | set(_KNOWN_MODULES))


def describe_predictors() -> dict[str, str]:
    """``{name: one-line description}`` (imports the known modules; they import torch lazily)."""
    for name in list(_KNOWN_MODULES):
        _load(name)
    return {name: _DESCRIPTIONS.get(name, "") for name in available_predictors()}


def predictor_parameters(name: str) -> dict[str, object]:
    """``{parameter: default}`` of a predictor factory (``inspect.Parameter.empty`` = required);
    ``name`` may be an alias."""
    name = canonical_predictor_name(name)
    _load(name)
    factory = _FACTORIES.get(name)
    if factory is None:
        raise PredictorError(f"unknown predictor {name!r}; available: {', '.join(available_predictors())}")
    params = inspect.signature(factory).parameters
    return {p.name: p.default for p in params.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def canonical_predictor_args(name: str, args: dict) -> dict:
    """``args`` with American spellings of ``name``'s option keys replaced by the registered
    ones (``center`` -> ``centre``); unchanged for an unknown predictor (the caller reports it).

    Raises:
        PredictorError: an option given in both spellings.
    """
    name = canonical_predictor_name(name)
    if not _known(name):
        return dict(args)
    return _option_keys(name, args, predictor_parameters(name))


def create_predictor(name: str, **kwargs) -> Predictor:
    """Build a registered predictor. ``name`` and option keys may be American spellings of
    the registered ones (``color``, ``center``); the predictor's ``name`` is the registered one.

    Raises:
        PredictorError: unknown name (lists the available ones) or unknown/missing arguments
            (lists the accepted ones).
        PredictorUnavailable: the predictor needs a package or file that is not there.
    """
    name = canonical_predictor_name(name)
    accepted = predictor_parameters(name)
    kwargs = _option_keys(name, kwargs, accepted)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" if v is not inspect.Parameter.empty else f"{k} (required)" for k, v in accepted.items())
        raise PredictorError(f"predictor {name!r} has no option(s) {', '.join(unknown)}; options: {listing or 'none'}")
    missing = [k for k, v in accepted.items() if v is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise PredictorError(f"predictor {name!r} needs {', '.join(missing)} (e.g. --predictor-arg {missing[0]}=...)")
    try:
        predictor = _FACTORIES[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise PredictorError(f"predictor {name!r}: {exc}") from None
    predictor.name = name
    return predictor
