"""The walk over the libraries: every public function, class and method with its docstring.

It runs in a child process, ``python -m tinyir.pydocs.walk RESULT_JSON MODULES_JSON``, so the
imports and their side effects never reach the caller (a notebook kernel). The child writes its
result as JSON and reports progress on stdout, one ``@@tinyir-walk INDEX TOTAL MODULE`` line
per module; ``run_walk`` starts it and drives a progress bar from those lines.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tinyir.pydocs.modules import is_public_module, library_of

_PROGRESS_MARK = "@@tinyir-walk"


def _object_module(obj: object) -> str | None:
    """The module that defines ``obj`` (routines of C types report it through their class)."""
    func = getattr(obj, "__func__", obj)
    module = getattr(func, "__module__", None)
    if not isinstance(module, str):
        owner = getattr(func, "__objclass__", None)
        bound = getattr(obj, "__self__", None)
        if owner is None and bound is not None and not inspect.ismodule(bound):
            owner = type(bound)
        module = getattr(owner, "__module__", None)
    return module if isinstance(module, str) else None


def _canonical_key(obj: object, module: str, fallback: str) -> str:
    """``obj.__module__ + "." + obj.__qualname__`` where meaningful, else ``fallback``."""
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):  # ufuncs, distributions, ...
        digest = hashlib.sha256((getattr(obj, "__doc__", "") or "").encode()).hexdigest()[:12]
        return f"{type(obj).__module__}.{type(obj).__qualname__}:{digest}"
    qualname = getattr(getattr(obj, "__func__", obj), "__qualname__", None)
    if isinstance(qualname, str) and "<" not in qualname:
        return f"{module}.{qualname}"
    return fallback


def _title_rank(name: str, canonical: str) -> tuple[int, int, int, str]:
    """Sort key choosing an object's title among its public names (smallest wins)."""
    parent = name.rsplit(".", 1)[0]
    return (name != canonical, not canonical.startswith(parent + "."), name.count("."), name)


def _signature_text(obj: object, drop_self: bool) -> str | None:
    try:
        sig = inspect.signature(obj)
    except Exception:  # builtins without text signatures, odd callables: use the docstring's
        return None
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        sig = sig.replace(parameters=params[1:])
    try:
        return str(sig)
    except Exception:
        return None


def _kind_of(obj: object) -> str | None:
    """Classify a module attribute: "class", "function", "object" or None (ignored).

    "object" is a documented callable instance: a ufunc, a SciPy distribution, a typing form.
    """
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    doc = getattr(obj, "__doc__", None)
    if callable(obj) and not inspect.ismodule(obj) and isinstance(doc, str):
        if type(obj).__name__ == "ufunc" or doc is not getattr(type(obj), "__doc__", None):
            return "object"
    return None


def _is_generated(func: object) -> bool:
    """True for functions made on the fly (a lambda or closure renamed into a class)."""
    qualname = getattr(func, "__qualname__", "")
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    return (isinstance(qualname, str) and "<locals>" in qualname) or (
        code is not None and code.co_name == "<lambda>"
    )


def _collect_module_objects(module_name: str, found: dict[str, dict]) -> None:
    """Add the public functions, classes and documented callables of one module to ``found``
    (canonical key -> {"obj", "names", "kind", "library"})."""
    module = importlib.import_module(module_name)
    library = library_of(module_name)
    numpy = sys.modules.get("numpy")
    names = set(dir(module))
    exported = getattr(module, "__all__", None)
    if isinstance(exported, list | tuple):
        names |= {n for n in exported if isinstance(n, str)}
    for name in sorted(names):
        if name.startswith("_"):
            continue
        try:
            obj = getattr(module, name)
        except Exception:
            continue
        kind = _kind_of(obj)
        if kind is None or type(obj).__name__ == "tensortype":  # torch's legacy FloatTensor & co
            continue
        if type(obj).__name__ == "ufunc":
            home = "numpy" if numpy is not None and getattr(numpy, name, None) is obj else None
            obj_module = home or module_name
        elif kind == "object":
            obj_module = type(obj).__module__
        else:
            obj_module = _object_module(obj)
        if obj_module is None or library_of(obj_module) != library:
            continue
        if not is_public_module(obj_module) or _is_generated(obj):
            continue
        public_name = f"{module_name}.{name}"
        key = _canonical_key(obj, obj_module, public_name)
        entry = found.setdefault(
            key, {"obj": obj, "names": set(), "kind": kind, "library": library}
        )
        entry["names"].add(public_name)


def _collect_methods(entry: dict, class_keys: set[str], methods: dict[str, dict]) -> None:
    """Add the public methods of one class to ``methods``: those defined on the class itself
    and on its private bases (a public base's methods are listed under that base)."""
    cls = entry["obj"]
    seen: set[str] = set()
    for distance, base in enumerate(inspect.getmro(cls)):
        if base is object:
            continue
        base_module = getattr(base, "__module__", None) or ""
        base_key = _canonical_key(base, base_module, "")
        walk_base = base is cls or (
            base_key not in class_keys
            and library_of(base_module) == entry["library"]
            and is_public_module(base_module)
        )
        for name in sorted(vars(base)):
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)  # a name defined on an earlier class of the MRO hides later ones
            raw = vars(base)[name]
            if not walk_base or isinstance(raw, property | functools.cached_property):
                continue
            if entry["library"] == "sklearn" and re.fullmatch(r"set_\w+_request", name):
                continue  # generated by scikit-learn's metadata routing
            try:
                attr = getattr(cls, name)
            except Exception:
                continue
            if not inspect.isroutine(attr) or _is_generated(attr):
                continue
            attr_module = _object_module(attr) or base_module
            if library_of(attr_module) != entry["library"] or not is_public_module(attr_module):
                continue
            key = _canonical_key(attr, attr_module, f"{base_key}.{name}")
            method = methods.setdefault(
                key,
                {"obj": attr, "names": set(), "titles": set(), "kind": "method",
                 "drop_self": not isinstance(raw, staticmethod | classmethod)},
            )  # fmt: skip
            method["names"].update(f"{alias}.{name}" for alias in entry["names"])
            # Title: under the class nearest to the definition, then the shortest name.
            method["titles"].add((distance, entry["title"].count("."), f"{entry['title']}.{name}"))


def _machine_path_scrubber() -> Callable[[str], str]:
    """Replace this machine's paths (interpreter, prefix, home, cwd) that defaults such as
    ``platform.architecture(executable=sys.executable)`` put into signatures."""
    paths = {
        sys.executable: "<python>", sys.prefix: "<prefix>", sys.exec_prefix: "<prefix>",
        sys.base_prefix: "<base-prefix>", os.path.expanduser("~"): "~", os.getcwd(): "<cwd>",
    }  # fmt: skip
    ordered = sorted((p for p in paths if len(p) > 1), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p in ordered))
    return lambda text: pattern.sub(lambda m: paths[m.group(0)], text)


def walk_modules(modules: Sequence[str], report: Callable[[int, int, str], None]) -> dict:
    """Collect every public function, class and method of ``modules``.

    Returns {"objects": [{"title", "kind", "signature", "doc"}], "names": {public name or
    canonical name: title}, "failed": [modules that did not import]}, all sorted by title.
    ``report(i, n, module)`` is called after each module and once more at the end (i == n).
    """
    found: dict[str, dict] = {}
    failed: list[str] = []
    total = len(modules) + 1
    for index, module_name in enumerate(modules, start=1):
        try:
            _collect_module_objects(module_name, found)
        except Exception:  # a module that does not import on this machine is skipped
            failed.append(module_name)
        report(index, total, module_name)
    for key, entry in found.items():
        entry["title"] = min(entry["names"], key=lambda n, k=key: _title_rank(n, k))

    class_keys = {k for k, e in found.items() if e["kind"] == "class"}
    methods: dict[str, dict] = {}
    for entry in sorted(
        (e for e in found.values() if e["kind"] == "class"), key=lambda e: e["title"]
    ):
        try:
            _collect_methods(entry, class_keys, methods)
        except Exception:  # an exotic class (broken MRO, failing descriptors) is skipped
            continue
    for key, method in methods.items():
        if key in found:  # also reached as a module-level name, e.g. random.randint
            found[key]["names"] |= method["names"]
            continue
        method["title"] = min(method["titles"])[2]
        found[key] = method

    scrub = _machine_path_scrubber()
    objects, name_map = [], {}
    for key, entry in sorted(found.items(), key=lambda item: (item[1]["title"], item[0])):
        obj = entry["obj"]
        if entry["kind"] == "object" and type(obj).__name__ != "ufunc":
            signature = None  # the signature of __call__ says nothing about the object
        else:
            signature = _signature_text(obj, drop_self=entry.get("drop_self", False))
        doc = getattr(obj, "__doc__", None)
        objects.append(
            {"title": entry["title"], "kind": entry["kind"],
             "signature": None if signature is None else scrub(signature),
             "doc": scrub(doc) if isinstance(doc, str) else None}
        )  # fmt: skip
        for name in sorted(entry["names"] | {key}):
            name_map.setdefault(name, entry["title"])
    report(total, total, "methods and signatures")
    return {"objects": objects, "names": dict(sorted(name_map.items())), "failed": sorted(failed)}


def _main(result_path: str, modules_json: str) -> None:
    """Child-process entry: walk, silence everything, write the result as JSON."""
    modules = json.loads(modules_json)
    progress_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints, including from C code, go nowhere
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # and Python-level ones too
    warnings.simplefilter("ignore")  # deprecation notices of the walked libraries

    def report(index: int, total: int, module: str) -> None:
        progress_out.write(f"{_PROGRESS_MARK} {index} {total} {module}\n")

    result = walk_modules(modules, report)
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


def run_walk(modules: Sequence[str], workdir: Path, progress: bool) -> dict:
    """Run the walk in a child process, driving a tqdm bar on stderr from its reports."""
    from tqdm import tqdm  # plain text on stderr, also inside notebooks (nbval-friendly)

    result_path = workdir / "walk.json"
    repo_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env.update(
        PYTHONHASHSEED="0", PYTHONUTF8="1", MPLBACKEND="Agg", PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            [repo_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
    )  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "tinyir.pydocs.walk",
        str(result_path),
        json.dumps(list(modules)),
    ]
    with (
        (workdir / "walk.stderr").open("w+", encoding="utf-8") as err,
        tqdm(total=len(modules) + 1, desc="pydocs walk", unit="module", file=sys.stderr,
             disable=not progress) as bar,
    ):  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, cwd=workdir, env=env, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(_PROGRESS_MARK):
                _, index, _total, module = line.rstrip("\n").split(" ", 3)
                bar.set_postfix_str(module, refresh=False)
                bar.update(int(index) - bar.n)
        code = proc.wait()
        if code != 0 or not result_path.is_file():
            err.seek(0)
            tail = err.read()[-3000:]
            raise RuntimeError(f"pydocs walk failed (exit code {code}):\n{tail}")
    return json.loads(result_path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _main(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: python -m tinyir.pydocs.walk RESULT_JSON MODULES_JSON (internal)")
