"""The data-only wire format and the student's copy of tinyir (fast; no student process)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from tinyir.grading.package import build_student_package
from tinyir.grading.protocol import ProtocolError, decode, encode, read_message, write_message


def roundtrip(value, make_ref=None):
    refs = []

    def default_ref(obj):
        refs.append(obj)
        return {"$ref": len(refs) - 1, "type": type(obj).__name__}

    blobs: list[bytes] = []
    data = encode(value, blobs, make_ref or default_ref)
    read, write = os.pipe()
    try:
        write_message(write, {"value": data}, blobs)
        header, got_blobs = read_message(read)
    finally:
        os.close(read)
        os.close(write)
    return decode(header["value"], got_blobs, lambda tag: ("REF", tag["$ref"])), refs


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2**70, 1.5, float("inf"), "text", b"\x00bytes", [1, [2, "x"]],
    (1, 2.5), {3, 1, 2}, frozenset({"a"}), {"k": [1, 2], 3: (4,)},
])
def test_plain_values_come_back_with_their_exact_types(value):
    got, refs = roundtrip(value)
    assert got == value and type(got) is type(value) and refs == []


def test_nan_and_nested_dicts():
    got, _ = roundtrip({"x": [float("nan"), -float("inf")]})
    assert math.isnan(got["x"][0]) and got["x"][1] == -math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.int64, torch.int32, torch.uint8, torch.bool])
def test_tensors_come_back_bit_for_bit(dtype):
    x = (torch.randn(3, 4, 5) * 10).to(dtype)
    got, _ = roundtrip([x, x[:, 1:, ::2], torch.zeros(0, 3, dtype=dtype), x[0, 0, 0]])
    for g, e in zip(got, [x, x[:, 1:, ::2], torch.zeros(0, 3, dtype=dtype), x[0, 0, 0]],
                    strict=True):
        assert type(g) is torch.Tensor and g.dtype == e.dtype and g.shape == e.shape
        assert torch.equal(g, e)


def test_arrays_and_numpy_scalars():
    a = np.arange(12, dtype=np.float32).reshape(3, 4).T  # not contiguous
    got, _ = roundtrip([a, np.float64(2.5), np.int32(3), np.array([True, False])])
    assert type(got[0]) is np.ndarray and np.array_equal(got[0], a) and got[0].dtype == a.dtype
    assert type(got[1]) is np.float64 and got[1] == 2.5
    assert type(got[2]) is np.int32 and got[2] == 3
    assert got[3].tolist() == [True, False]


def test_subclasses_and_objects_travel_as_handles_never_as_data():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    class MyInt(int):
        pass

    liar = torch.zeros(2).as_subclass(Liar)
    got, refs = roundtrip([liar, MyInt(3), object, np.array([object()], dtype=object)])
    assert [g[0] for g in got] == ["REF"] * 4
    assert refs[0] is liar and refs[1] == 3


def test_parameters_and_state_dicts_are_data():
    model = torch.nn.Linear(3, 2)
    got, refs = roundtrip(model.state_dict())
    assert type(got) is dict and refs == []
    assert all(type(v) is torch.Tensor for v in got.values())
    assert torch.equal(got["weight"], model.weight.detach())


@pytest.mark.parametrize("data, blobs", [
    ([1, 2], []),                                   # untagged list
    ({"$tensor": {"dtype": "float32", "shape": [2], "blob": 0}}, [b"123"]),  # wrong size
    ({"$tensor": {"dtype": "object", "shape": [1], "blob": 0}}, [b"1234"]),  # unknown dtype
    ({"$ndarray": {"dtype": "float32", "shape": [-1], "blob": 0}}, [b""]),   # bad shape
    ({"$tensor": {"dtype": "float32", "shape": [1], "blob": 5}}, [b"1234"]),  # bad blob index
    ({"$float": "1e999"}, []),
    ({"$bigint": "9" * 5000}, []),
    ({"$evil": 1}, []),
    ({"$list": "abc"}, []),
    ({"$dict": [[1]]}, []),
])
def test_malformed_data_is_a_protocol_error(data, blobs):
    with pytest.raises(ProtocolError):
        decode(data, blobs, lambda tag: None)


def test_deep_nesting_is_refused():
    data = {"$list": []}
    for _ in range(200):
        data = {"$list": [data]}
    with pytest.raises(ProtocolError, match="deeper"):
        decode(data, [], lambda tag: None)


def test_oversized_and_cut_messages():
    read, write = os.pipe()
    try:
        os.write(write, (2**31).to_bytes(4, "little"))
        with pytest.raises(ProtocolError, match="bytes"):
            read_message(read)
        os.write(write, (10).to_bytes(4, "little") + b"{}")
        os.close(write)
        with pytest.raises(EOFError):
            read_message(read)
    finally:
        os.close(read)


def test_student_package_has_no_tests_and_no_reference_answers(tmp_path):
    dest = build_student_package(tmp_path, ["tinyir.pooling:mean_pooling",
                                            "tinyir.search:FaissIndex"])
    root = dest / "tinyir"
    assert not (root / "grading" / "tests").exists()
    pooling = (root / "pooling.py").read_text()
    assert "reference answer" in pooling and "def last_token_pooling" in pooling
    assert "clamp(min=1e-09)" not in pooling.split("def mean_pooling")[1].split("def ")[0]
    search = (root / "search.py").read_text()
    assert search.count("reference answer") >= 5  # every method of the class
    with pytest.raises(ValueError, match="names no function"):
        build_student_package(tmp_path / "again", ["tinyir.pooling:no_such_function"])
    with pytest.raises(ValueError, match="tinyir.module:name"):
        build_student_package(tmp_path / "again2", ["os:path"])
