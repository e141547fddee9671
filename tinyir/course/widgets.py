"""Course widgets: the storage-cost calculator of notebook 12.

The logic is a plain function, :func:`storage_calculator_table`, that tests call; the widget,
:func:`storage_calculator`, only collects the inputs and prints that function's table. In CI or
a terminal (no widget front end) ``storage_calculator`` prints the table for its default inputs.

    rows = storage_calculator_table(1_000_000, 1024)          # fp32, fp16, int8, binary
    [r["human_rounded"] for r in rows]                         # ['4 GB', '2 GB', '1 GB', '100 MB']
    storage_calculator(docs=1_000_000, dim=128, vectors_per_doc=200)   # ColBERT-style
"""

from __future__ import annotations

import html

from tinyir.storage import INDEX_TYPES, format_bytes, storage_cost

DTYPES = ("fp32", "fp16", "int8", "binary")
COLUMNS = ("dtype", "human", "bytes", "vectors", "index_overhead", "bytes_per_doc", "vs_fp32")


def storage_calculator_table(
    docs: int,
    dim: int,
    dtypes: tuple[str, ...] = DTYPES,
    vectors_per_doc: float = 1,
    index: str = "flat",
    hnsw_m: int = 32,
    pq_m: int | None = None,
    nlist: int | None = None,
) -> list[dict[str, object]]:
    """One row per dtype with what an index of ``docs`` documents costs.

    docs, dim, vectors_per_doc, index, hnsw_m, pq_m, nlist: as in
    :func:`tinyir.storage.storage_cost`. Each row: "dtype", "bytes" (int, the total), "human"
    (3 significant figures), "human_rounded" (1 significant figure, the book's style),
    "vectors" and "index_overhead" (bytes), "bytes_per_doc" (float) and "vs_fp32" (this row's
    bytes / the fp32 row's bytes, computed even when fp32 is not among ``dtypes``), and
    "assumptions" (list of str). For index="ivfpq" the dtype does not change the bytes.
    """
    if not dtypes:
        raise ValueError("dtypes: expected at least one dtype, got an empty sequence")
    options = dict(vectors_per_doc=vectors_per_doc, index=index, hnsw_m=hnsw_m, pq_m=pq_m,
                   nlist=nlist)
    reference = storage_cost(docs, dim, dtype="fp32", **options).bytes
    rows = []
    for dtype in dtypes:
        cost = storage_cost(docs, dim, dtype=dtype, **options)
        rows.append({
            "dtype": dtype,
            "bytes": cost.bytes,
            "human": cost.human,
            "human_rounded": format_bytes(cost.bytes, significant=1),
            "vectors": cost.breakdown["vectors"],
            "index_overhead": cost.breakdown["index_overhead"],
            "bytes_per_doc": cost.bytes / docs,
            "vs_fp32": cost.bytes / reference,
            "assumptions": cost.assumptions,
        })
    return rows


def format_table(rows: list[dict[str, object]], selected: str | None = None) -> str:
    """The rows of :func:`storage_calculator_table` as a fixed-width text table.

    ``selected`` marks one dtype's row with "->" (the widget's current choice).
    """
    header = f"   {'dtype':7s} {'total':>9s} {'vectors':>9s} {'overhead':>9s} " \
             f"{'per doc':>9s} {'vs fp32':>9s}"
    lines = [header, "   " + "-" * (len(header) - 3)]
    for row in rows:
        mark = "->" if row["dtype"] == selected else "  "
        lines.append(
            f"{mark} {row['dtype']:7s} {row['human']:>9s} {format_bytes(row['vectors']):>9s} "
            f"{format_bytes(row['index_overhead']):>9s} {format_bytes(row['bytes_per_doc']):>9s} "
            f"{row['vs_fp32']:>8.4g}x"  # 0.03125x (binary) fits
        )
    return "\n".join(lines)


def storage_report(
    docs: int,
    dim: int,
    dtype: str = "fp32",
    vectors_per_doc: float = 1,
    index: str = "flat",
    hnsw_m: int = 32,
) -> str:
    """The calculator's text output: the table for every dtype, then the chosen dtype's
    assumptions (what a reader checks a quoted figure against)."""
    dtypes = DTYPES if dtype in DTYPES else (*DTYPES, dtype)
    rows = storage_calculator_table(docs, dim, dtypes=dtypes, vectors_per_doc=vectors_per_doc,
                                    index=index, hnsw_m=hnsw_m)
    chosen = next(row for row in rows if row["dtype"] == dtype)
    lines = [format_table(rows, selected=dtype), "", f"{dtype}: {chosen['human']} "
             f"({chosen['bytes']:,} B), assumptions:"]
    lines += [f"  - {line}" for line in chosen["assumptions"]]
    return "\n".join(lines)


def storage_calculator(
    docs: int = 1_000_000,
    dim: int = 1024,
    dtype: str = "fp32",
    vectors_per_doc: float = 1,
    index: str = "flat",
    hnsw_m: int = 32,
):
    """An ipywidgets calculator over :func:`storage_report`; returns the widget (a VBox).

    Without a widget front end (CI, a terminal) it prints ``storage_report`` for the given
    inputs instead and returns None, as ``Quiz.show`` does.
    """
    from tinyir.course.quiz import _widgets_available

    if not _widgets_available():
        print(storage_report(docs, dim, dtype, vectors_per_doc, index, hnsw_m))
        return None
    import ipywidgets as widgets

    style = {"description_width": "140px"}
    inputs = {
        "docs": widgets.IntText(value=docs, description="documents", style=style),
        "dim": widgets.IntText(value=dim, description="dimension", style=style),
        "dtype": widgets.Dropdown(options=DTYPES, value=dtype, description="dtype", style=style),
        "vectors_per_doc": widgets.FloatText(value=vectors_per_doc,
                                             description="vectors per doc", style=style),
        "index": widgets.Dropdown(options=INDEX_TYPES, value=index, description="index",
                                  style=style),
        "hnsw_m": widgets.IntSlider(value=hnsw_m, min=4, max=64, step=4,
                                    description="HNSW M (links)", style=style),
    }
    output = widgets.Output()

    def update(_=None) -> None:
        # The HNSW slider only means something for an HNSW index.
        inputs["hnsw_m"].layout.display = None if inputs["index"].value == "hnsw" else "none"
        try:
            text = storage_report(**{name: w.value for name, w in inputs.items()})
        except ValueError as err:  # e.g. a dimension PQ cannot split: say why
            text = f"cannot compute: {err}"
        # The output's content in one assignment, rather than clear_output() then print() in
        # `with output:`: no message the front end sends in between can see it half drawn.
        output.outputs = ({"output_type": "stream", "name": "stdout", "text": text + "\n"},)

    for widget in inputs.values():
        widget.observe(update, names="value")
    update()
    box = widgets.VBox([*inputs.values(), output])
    box.add_class("tinyir-storage-calculator")  # the browser test finds it by this class
    return with_static_html(box, lambda: (
        "<p><i>In Jupyter an interactive calculator runs here; this page shows its output for "
        "the inputs it started with:</i></p><pre>"
        + html.escape(storage_report(**{name: w.value for name, w in inputs.items()}))
        + "</pre>"))


def with_static_html(widget, make_html):
    """``widget``, displayed with a ``text/html`` fallback from ``make_html()`` beside its widget
    view: Jupyter renders the live widget; pages where widgets cannot run (nbconvert, the book)
    render the HTML."""
    widget_bundle = widget._repr_mimebundle_

    def bundle(**kwargs):
        data = widget_bundle(**kwargs)
        return data if data is None else {**data, "text/html": make_html()}

    widget._repr_mimebundle_ = bundle
    return widget
