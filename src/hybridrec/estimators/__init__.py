"""Estimators the core shares across drivers and plugins (:mod:`hybridrec.estimators.counting`)."""

__all__: list[str] = []
