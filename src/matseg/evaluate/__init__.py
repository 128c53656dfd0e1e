"""Evaluation (paper §4): the MatSeg benchmark and its triplet metric, IoU at the optimal
threshold on mask datasets, predictors (baselines, SAM) and ``matseg eval``.

Modules: ``benchmark`` (loader), ``relations`` (group_relations.txt), ``metrics`` (triplet
metric, point descriptors), ``iou`` (optimal-threshold IoU, mask datasets), ``predictors``
(interface + registry), ``jobs`` (batch evaluation), ``report`` (tables, CSV, panels), ``cli``.
"""
