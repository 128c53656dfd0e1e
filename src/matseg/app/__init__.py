"""``matseg app``: a local web app over the other stages (the last floor of the house).

* Explore: open a photo, click a point, see where else its material is (the default model or
  ``--weights``); segment; download maps, masks and points.
* Browse: MatSeg-format datasets, PBR folders and texture folders given with ``--data``.
* Results: ``matseg eval`` output folders given with ``--results``, side by side.
* Annotate: point annotations in the MatSeg benchmark layout, folders given with ``--bench``.

Modules: ``roots`` (the only files served), ``explore`` (image store, descriptor cache, maps),
``browse``, ``results``, ``annotate`` (pure functions over folders), ``server`` (Flask routes),
``cli``. Flask is an optional extra: ``pip install 'matseg[app]'``.
"""
