"""``group_relations.txt``: partial similarity between the material groups of a benchmark image.

Syntax (one group per line, reference digest §1.10, made tolerant)::

    [1,2,3]     every pair of these materials is partially similar: weight 0.6
    (2, 4)      weaker partial similarity: weight 0.3

Spaces around keys and brackets, blank lines, a trailing newline, CRLF line ends and ``#``
comment lines are accepted (the reference aborted on any of them). A line must hold exactly
one bracket kind, opened at its start and closed at its end. A key that is not a material
of the image, or a line with both/neither/unbalanced bracket kinds, raises
:class:`RelationsError` naming the file and line. A material is always fully similar to
itself (1) and unrelated materials have similarity 0.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

__all__ = ["RelationsError", "BRACKET_WEIGHTS", "parse_relations", "read_relations", "similarity_matrix"]

logger = logging.getLogger(__name__)

# opening bracket -> (closing bracket, partial similarity weight) [§1.10]
BRACKET_WEIGHTS: dict[str, tuple[str, float]] = {"[": ("]", 0.6), "(": (")", 0.3)}


class RelationsError(ValueError):
    """A relations file is malformed or names an unknown material; the message names file and line."""


def parse_relations(
    text: str,
    keys: list[str] | tuple[str, ...],
    source: str = "group_relations.txt",
    weights: dict[str, float] | None = None,
) -> tuple[dict[tuple[str, str], float], list[str]]:
    """Parse the text of a relations file.

    Args:
        text: file content.
        keys: the material keys of the image (strings, as in ``data.json``).
        source: name used in messages (usually the path).
        weights: optional override of the weight per opening bracket (``{"[": 0.6, "(": 0.3}``).

    Returns:
        ``(pairs, warnings)``: ``pairs`` maps each ordered pair ``(a, b)`` of distinct keys to its
        weight (both orders present); ``warnings`` lists lines that were accepted but odd (a
        group of one, a pair given twice with different weights: the later line wins, as in the
        reference).

    Raises:
        RelationsError: bad syntax or an unknown key (message: ``source:line: problem``).
    """
    known = set(keys)
    weight_of = {b: w for b, (_, w) in BRACKET_WEIGHTS.items()}
    if weights:
        weight_of.update(weights)
    pairs: dict[tuple[str, str], float] = {}
    where: dict[tuple[str, str], int] = {}
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        opening = [b for b in BRACKET_WEIGHTS if b in line]
        closing = [BRACKET_WEIGHTS[b][0] for b in BRACKET_WEIGHTS if BRACKET_WEIGHTS[b][0] in line]
        if len(opening) != 1 or len(closing) != 1:
            kinds = "both [..] and (..)" if len(opening) > 1 or len(closing) > 1 else "no [..] or (..) group"
            raise RelationsError(f"{source}:{number}: expected one group like [a,b] or (a,b), found {kinds}: {raw!r}")
        bracket = opening[0]
        close = BRACKET_WEIGHTS[bracket][0]
        if not (line.startswith(bracket) and line.endswith(close)) or line.count(bracket) != 1 or line.count(close) != 1:
            raise RelationsError(f"{source}:{number}: a group must start with {bracket!r} and end with {close!r}: {raw!r}")
        members = [m.strip() for m in line[1:-1].split(",")]
        if any(not m for m in members):
            raise RelationsError(f"{source}:{number}: empty material key in {raw!r}")
        unknown = [m for m in members if m not in known]
        if unknown:
            raise RelationsError(
                f"{source}:{number}: material key(s) {', '.join(map(repr, unknown))} not in the image's data "
                f"(materials: {', '.join(sorted(known, key=_natural)) or 'none'})"
            )
        distinct = list(dict.fromkeys(members))
        if len(distinct) < 2:
            warnings.append(f"{source}:{number}: group {raw.strip()!r} has fewer than two materials; ignored")
            continue
        weight = float(weight_of[bracket])
        for a in distinct:
            for b in distinct:
                if a == b:
                    continue
                old = pairs.get((a, b))
                if old is not None and old != weight and a < b:
                    warnings.append(
                        f"{source}:{number}: pair ({a},{b}) already given weight {old} on line {where[(a, b)]}; "
                        f"now {weight} (later line wins)"
                    )
                pairs[(a, b)] = weight
                where[(a, b)] = number
    for message in warnings:
        logger.warning(message)
    return pairs, warnings


def read_relations(
    path: str | os.PathLike, keys: list[str] | tuple[str, ...], weights: dict[str, float] | None = None
) -> tuple[dict[tuple[str, str], float], list[str]]:
    """:func:`parse_relations` on a file (UTF-8, BOM accepted); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RelationsError(f"{path}: cannot read relations file ({exc})") from None
    return parse_relations(text, keys, str(path), weights)


def similarity_matrix(keys: list[str] | tuple[str, ...], pairs: dict[tuple[str, str], float] | None = None) -> np.ndarray:
    """Ground-truth material similarity.

    Returns:
        ``(M, M)`` float64, ``M = len(keys)``: 1 on the diagonal, ``pairs[(a, b)]`` for related
        materials, 0 otherwise; symmetric when ``pairs`` is (as :func:`parse_relations` returns).
    """
    index = {k: i for i, k in enumerate(keys)}
    sim = np.eye(len(keys), dtype=np.float64)
    for (a, b), w in (pairs or {}).items():
        if a in index and b in index and a != b:
            sim[index[a], index[b]] = w
    return sim


def _natural(key: str) -> tuple:
    return (0, int(key), key) if key.isdigit() else (1, 0, key)
