"""The course dataset ``pydocs``, built offline from the docstrings of installed libraries.

Every public function, class and method of the Python standard library (an allow-list of
user-facing modules), NumPy, SciPy, PyTorch, Matplotlib and scikit-learn gives one pair written by
the library's authors:

- query   = the docstring's one-line summary, e.g. "Return the cumulative sum of the elements
  along a given axis."
- passage = the object's qualified name (``title``) and its signature plus the rest of the
  docstring (``text``), with the summary removed.

Objects that share a summary become one query with all of them relevant (grade 1); the
"See Also" links of each object are kept apart as natural hard negatives (``cumsum`` vs ``sum``).
The folder is in the BEIR layout: read it with ``tinyir.beir.load_beir``.

    modules.py   what is walked: the module lists and which objects count as public
    walk.py      the walk over the libraries, in a child process
    clean.py     docstring -> (query, passage) and See Also links: pure functions
    build.py     splits, query ids, the manifest; build_pydocs, check_manifest, the fingerprint
"""

from tinyir.pydocs.build import PYDOCS_DIR, build_pydocs, check_manifest, dataset_fingerprint
from tinyir.pydocs.clean import MAX_BODY_CHARS

__all__ = ["MAX_BODY_CHARS", "PYDOCS_DIR", "build_pydocs", "check_manifest", "dataset_fingerprint"]
