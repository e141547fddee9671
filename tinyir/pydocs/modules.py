"""What the pydocs build walks: the standard-library and third-party modules, and the rules
that keep an object in (its library, a public module) or a module out (import side effects)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

# Public, user-facing standard-library modules. Never modules with import side effects
# (antigravity, this, turtle, tkinter, idlelib): see _FORBIDDEN_MODULES.
STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "asyncio", "atexit", "base64", "binascii", "bisect",
    "builtins", "bz2", "calendar", "cmath", "cmd", "code", "codecs", "codeop", "collections",
    "collections.abc", "colorsys", "compileall", "concurrent.futures", "configparser", "contextlib",
    "contextvars", "copy", "copyreg", "cProfile", "csv", "ctypes", "dataclasses", "datetime",
    "decimal", "difflib", "dis", "doctest", "email", "email.generator", "email.header",
    "email.headerregistry", "email.message", "email.mime.multipart", "email.mime.text",
    "email.parser", "email.policy", "email.utils", "enum", "errno", "faulthandler", "fcntl",
    "filecmp", "fnmatch", "fractions", "ftplib", "functools", "gc", "getopt", "gettext", "glob",
    "graphlib", "grp", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client",
    "http.cookiejar", "http.cookies", "http.server", "imaplib", "importlib", "importlib.abc",
    "importlib.machinery", "importlib.metadata", "importlib.resources", "importlib.util", "inspect",
    "io", "ipaddress", "itertools", "json", "keyword", "linecache", "locale", "logging",
    "logging.config", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "mmap",
    "modulefinder", "multiprocessing", "multiprocessing.pool", "multiprocessing.shared_memory",
    "netrc", "numbers", "operator", "optparse", "os", "os.path", "pathlib", "pdb", "pickle",
    "pkgutil", "platform", "plistlib", "poplib", "pprint", "profile", "pstats", "pty", "pwd",
    "py_compile", "pyclbr", "queue", "quopri", "random", "re", "reprlib", "resource", "runpy",
    "sched", "secrets", "select", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib",
    "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "stringprep",
    "struct", "subprocess", "symtable", "sys", "sysconfig", "tarfile", "tempfile", "termios",
    "textwrap", "threading", "time", "timeit", "token", "tokenize", "tomllib", "trace", "traceback",
    "tracemalloc", "tty", "types", "typing", "unicodedata", "unittest", "unittest.mock",
    "urllib.error", "urllib.parse", "urllib.request", "urllib.robotparser", "uuid", "warnings",
    "wave", "weakref", "wsgiref.simple_server", "wsgiref.util", "xml.dom", "xml.dom.minidom",
    "xml.etree.ElementTree", "xml.parsers.expat", "xml.sax", "xml.sax.saxutils", "xmlrpc.client",
    "xmlrpc.server", "zipapp", "zipfile", "zipimport", "zlib", "zoneinfo",
)  # fmt: skip

# Third-party libraries: import name -> (distribution name, public modules walked).
THIRD_PARTY_MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "numpy": ("numpy", (
        "numpy", "numpy.char", "numpy.ctypeslib", "numpy.exceptions", "numpy.fft",
        "numpy.lib.array_utils", "numpy.lib.format", "numpy.lib.mixins", "numpy.lib.npyio",
        "numpy.lib.recfunctions", "numpy.lib.scimath", "numpy.lib.stride_tricks", "numpy.linalg",
        "numpy.ma", "numpy.polynomial", "numpy.polynomial.chebyshev", "numpy.polynomial.hermite",
        "numpy.polynomial.hermite_e", "numpy.polynomial.laguerre", "numpy.polynomial.legendre",
        "numpy.polynomial.polynomial", "numpy.random", "numpy.rec", "numpy.strings",
    )),
    "scipy": ("scipy", (
        "scipy.cluster.hierarchy", "scipy.cluster.vq", "scipy.constants", "scipy.datasets",
        "scipy.differentiate", "scipy.fft", "scipy.fftpack", "scipy.integrate",
        "scipy.interpolate", "scipy.io", "scipy.io.arff", "scipy.io.matlab", "scipy.io.wavfile",
        "scipy.linalg", "scipy.ndimage", "scipy.odr", "scipy.optimize", "scipy.signal",
        "scipy.signal.windows", "scipy.sparse", "scipy.sparse.csgraph", "scipy.sparse.linalg",
        "scipy.spatial", "scipy.spatial.distance", "scipy.spatial.transform", "scipy.special",
        "scipy.stats", "scipy.stats.contingency", "scipy.stats.mstats", "scipy.stats.qmc",
    )),
    "torch": ("torch", (
        "torch", "torch.accelerator", "torch.amp", "torch.autograd", "torch.autograd.functional",
        "torch.autograd.graph", "torch.backends.cudnn", "torch.compiler", "torch.cpu",
        "torch.cuda", "torch.distributions", "torch.export", "torch.fft", "torch.func",
        "torch.functional", "torch.futures", "torch.hub", "torch.jit", "torch.library",
        "torch.linalg", "torch.masked", "torch.monitor", "torch.mps", "torch.nested", "torch.nn",
        "torch.nn.attention", "torch.nn.functional", "torch.nn.init", "torch.nn.parameter",
        "torch.nn.utils", "torch.nn.utils.parametrize", "torch.nn.utils.prune",
        "torch.nn.utils.rnn", "torch.optim", "torch.optim.lr_scheduler", "torch.overrides",
        "torch.profiler", "torch.quasirandom", "torch.random", "torch.serialization",
        "torch.signal.windows", "torch.sparse", "torch.special", "torch.storage", "torch.types",
        "torch.utils.checkpoint", "torch.utils.data", "torch.utils.data.distributed",
        "torch.utils.hooks",
    )),
    "matplotlib": ("matplotlib", (
        "matplotlib", "matplotlib.animation", "matplotlib.artist", "matplotlib.axes",
        "matplotlib.axis", "matplotlib.backend_bases", "matplotlib.backend_tools",
        "matplotlib.bezier", "matplotlib.category", "matplotlib.cbook", "matplotlib.cm",
        "matplotlib.collections", "matplotlib.colorbar", "matplotlib.colorizer",
        "matplotlib.colors", "matplotlib.container", "matplotlib.contour", "matplotlib.dates",
        "matplotlib.figure", "matplotlib.font_manager", "matplotlib.gridspec", "matplotlib.hatch",
        "matplotlib.image", "matplotlib.layout_engine", "matplotlib.legend", "matplotlib.lines",
        "matplotlib.markers", "matplotlib.mlab", "matplotlib.offsetbox", "matplotlib.patches",
        "matplotlib.path", "matplotlib.patheffects", "matplotlib.projections",
        "matplotlib.projections.polar", "matplotlib.pyplot", "matplotlib.quiver",
        "matplotlib.rcsetup", "matplotlib.sankey", "matplotlib.scale", "matplotlib.spines",
        "matplotlib.streamplot", "matplotlib.style", "matplotlib.table", "matplotlib.text",
        "matplotlib.textpath", "matplotlib.ticker", "matplotlib.transforms", "matplotlib.tri",
        "matplotlib.units", "matplotlib.widgets",
    )),
    "sklearn": ("scikit-learn", tuple(f"sklearn.{name}" for name in (
        "base", "calibration", "callback", "cluster", "compose", "covariance",
        "cross_decomposition", "datasets", "decomposition", "discriminant_analysis", "dummy",
        "ensemble", "exceptions", "feature_extraction", "feature_extraction.image",
        "feature_extraction.text", "feature_selection", "frozen", "gaussian_process",
        "gaussian_process.kernels", "impute", "inspection", "isotonic", "kernel_approximation",
        "kernel_ridge", "linear_model", "manifold", "metrics", "metrics.cluster",
        "metrics.pairwise", "mixture", "model_selection", "multiclass", "multioutput",
        "naive_bayes", "neighbors", "neural_network", "pipeline", "preprocessing",
        "random_projection", "semi_supervised", "svm", "tree", "utils", "utils.arrayfuncs",
        "utils.class_weight", "utils.discovery", "utils.extmath", "utils.graph",
        "utils.metaestimators", "utils.multiclass", "utils.parallel", "utils.random",
        "utils.sparsefuncs", "utils.validation",
    ))),
}  # fmt: skip

DEFAULT_MODULES: tuple[str, ...] = tuple(
    sorted(STDLIB_MODULES + tuple(m for _, mods in THIRD_PARTY_MODULES.values() for m in mods))
)

_FORBIDDEN_MODULES = frozenset(
    {"antigravity", "this", "turtle", "turtledemo", "tkinter", "idlelib"}
)
# Module path parts that mark code not meant for users (compared without leading underscores).
_NON_PUBLIC_PARTS = frozenset(
    {"test", "tests", "testing", "conftest", "compat", "internal", "externals", "vendored",
     "generated"}
)  # fmt: skip
# Standard-library objects whose __module__ names an implementation module of another one.
_STDLIB_ALIASES = {
    "posix": "os",
    "posixpath": "os",
    "genericpath": "os",
    "nt": "os",
    "ntpath": "os",
}


def check_modules(modules: Sequence[str] | None) -> tuple[str, ...]:
    """The sorted, de-duplicated module list to walk (``DEFAULT_MODULES`` for None); raises
    TypeError for a malformed list and ValueError for a module with import side effects."""
    if modules is None:
        return DEFAULT_MODULES
    if isinstance(modules, str) or not all(isinstance(m, str) and m for m in modules):
        raise TypeError(f"modules: expected a list of module names, got {modules!r}")
    bad = sorted(m for m in modules if m.split(".")[0] in _FORBIDDEN_MODULES)
    if bad:
        raise ValueError(f"modules: {bad} have import side effects and are never walked")
    return tuple(sorted(set(modules)))


def installed_packages(modules: Sequence[str]) -> dict[str, str]:
    """{distribution: installed version} for the third-party libraries among ``modules``."""
    packages = {}
    for top, (dist, _) in sorted(THIRD_PARTY_MODULES.items()):
        if any(m.split(".")[0] == top for m in modules):
            try:
                packages[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                packages[dist] = "not installed"
    return packages


def library_of(module_name: str) -> str:
    """The library a module belongs to: its top-level package without leading underscores."""
    top = module_name.split(".")[0].lstrip("_")
    return _STDLIB_ALIASES.get(top, top)


def is_public_module(module_name: str) -> bool:
    """False for modules meant for tests, vendored or internal code (see _NON_PUBLIC_PARTS)."""
    return not any(part.lstrip("_") in _NON_PUBLIC_PARTS for part in module_name.split("."))
