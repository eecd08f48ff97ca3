"""Bad input: fuzz RunConfig, presets (dicts, TOML text, raw bytes) and RoiInputs with hypothesis.

Contract under test: an input is either accepted or rejected with a ValueError whose message names
the offending field; never another exception type. derandomize=True and no example database, so CI
sees the same examples every time. Each test prints how many examples it ran.

Inputs that once escaped as other exceptions are kept out of the broad strategies and have their
own regression tests at the end of this file:
  * integers beyond float range in float fields -> OverflowError (RunConfig, RoiInputs);
  * preset shapes that crash expand(): a table/array as an optimizer name, a non-table
    [optimizer.NAME], a non-table run.hparams -> TypeError;
  * deeply nested TOML -> RecursionError from load_preset.
Dict keys are strings everywhere (TOML and JSON cannot produce anything else).
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alto.analysis.savings import RoiInputs
from alto.train.config import RunConfig
from alto.train.presets import TOP_KEYS, load_preset, parse_preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - as alto.train.presets does
    import tomli as tomllib

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])
INT64 = 2 ** 63
FIELDS = [f.name for f in dataclasses.fields(RunConfig)]

# -- strategies -------------------------------------------------------------------------------------

ints = st.one_of(st.integers(-3, 3000), st.integers(-INT64, INT64 - 1))
floats = st.floats(allow_nan=True, allow_infinity=True)
short_text = st.text(max_size=12)
realistic = st.sampled_from([
    "digits", "mnist", "cifar10", "stdlib-chars", "text-file:/nope.txt", "text-file:", "mlp", "cnn", "resnet20",
    "alto", "lamb", "sgd", "lion", "adamw", "e_sgd", "cosine", "step", "multistep", "linear", "sqrt", "none",
    "bf16", "fp32", "cpu", "cuda", "cuda:1", "cuda:x", "auto", "host:29500", "[::1]:1", "a b:1", "", "0.5"])
scalar = st.one_of(st.booleans(), ints, floats, short_text, realistic)
json_value = st.recursive(st.one_of(st.none(), scalar),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(short_text, inner, max_size=4)),
                          max_leaves=8)
field_value = st.one_of(
    json_value,
    st.integers(0, 64), st.floats(0, 1), st.booleans(), realistic, st.none(),  # plausible scalars
    st.lists(st.floats(0, 1), max_size=4),                                   # milestones-like
    st.dictionaries(st.sampled_from(["alpha", "betas", "eps", "weight_decay", "momentum", "lr", "nesterov",
                                     "trust_ratio", "grad_clip", "hidden", "zzz"]), json_value, max_size=3),
    st.tuples(floats, floats, floats))


def names_field(message: str, *names: str) -> bool:
    """The message names one of `names`: as a word, or quoted as Python shows it (repr)."""
    return any(repr(n) in message or (n and re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", message))
               for n in names)


# -- RunConfig --------------------------------------------------------------------------------------

def test_runconfig_each_field_random_types_and_values():
    outcome: Counter = Counter()

    @FUZZ
    @given(field=st.sampled_from(FIELDS), value=field_value)
    @example(field="lr", value=float("nan"))
    @example(field="milestones", value=[0.75, 0.5])
    @example(field="hparams", value={"lr": 0.1})
    @example(field="nnodes", value=2)
    @example(field="device", value="cuda:")
    def check(field, value):
        try:
            config = RunConfig(**{field: value})
        except ValueError as err:
            outcome["ValueError"] += 1
            assert names_field(str(err), field), f"{field}={value!r}: message does not name it: {err}"
            return
        outcome["accepted"] += 1
        again = RunConfig.from_dict(config.to_dict())  # what is stored is what comes back
        assert again == config

    check()
    print(f"\nFUZZ RunConfig single field: {sum(outcome.values())} examples ({dict(outcome)})")
    assert sum(outcome.values()) >= 100 and outcome["accepted"] and outcome["ValueError"]


def test_runconfig_from_random_dicts():
    outcome: Counter = Counter()
    keys = st.one_of(st.sampled_from(FIELDS), short_text)

    @FUZZ
    @given(data=st.dictionaries(keys, field_value, max_size=6))
    def check(data):
        try:
            RunConfig.from_dict(data)
        except ValueError as err:
            outcome["ValueError"] += 1
            assert names_field(str(err), *data), f"{data!r}: message names none of its keys: {err}"
            return
        outcome["accepted"] += 1

    check()
    print(f"\nFUZZ RunConfig.from_dict: {sum(outcome.values())} examples ({dict(outcome)})")
    assert sum(outcome.values()) >= 100 and outcome["ValueError"]


# -- presets: dicts ---------------------------------------------------------------------------------

hashable_scalar = st.one_of(st.booleans(), ints, floats, short_text, realistic)
run_table = st.dictionaries(
    st.sampled_from([f for f in FIELDS if f not in ("hparams",)] + ["bogus"]), field_value, max_size=4,
).flatmap(lambda run: st.one_of(st.just(run), st.builds(lambda h: {**run, "hparams": h},
                                                        st.dictionaries(short_text, json_value, max_size=2))))
preset_doc = st.fixed_dictionaries({}, optional={
    "name": st.one_of(short_text, scalar), "title": st.one_of(short_text, scalar),
    "source": st.one_of(short_text, scalar), "description": st.one_of(short_text, json_value),
    "optimizers": st.one_of(st.lists(st.one_of(st.sampled_from(["alto", "lamb", "sgd", "lion"]), hashable_scalar),
                                     max_size=3), scalar),
    "seeds": st.one_of(st.integers(-1, 4), scalar),
    "run": st.one_of(run_table, scalar),
    "optimizer": st.one_of(st.dictionaries(st.sampled_from(["alto", "lamb", "sgd", "lion", "zzz"]),
                                           st.dictionaries(st.sampled_from(["lr", "alpha", "eps", "zz"]), json_value,
                                                           max_size=2), max_size=2), scalar),
    "lr_grid": st.one_of(st.dictionaries(st.sampled_from(["alto", "sgd", "zzz"]),
                                         st.one_of(st.lists(st.one_of(st.floats(1e-4, 1), json_value), max_size=3),
                                                   json_value), max_size=2), scalar),
    "sweep": st.one_of(st.dictionaries(st.sampled_from(["batch_size", "epochs", "seed", "bogus"]),
                                       st.one_of(st.lists(json_value, max_size=3), json_value), max_size=2), scalar),
    "targets": st.one_of(st.dictionaries(short_text, json_value, max_size=3), scalar),
    "bogus": json_value,
})


def _keys(obj) -> set[str]:
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(str(k))
            out |= _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _keys(v)
    return out


def _preset_names_field(message: str, doc: dict) -> bool:
    return names_field(message, *_keys(doc), *TOP_KEYS, *FIELDS)


def test_parse_preset_random_documents():
    outcome: Counter = Counter()

    @FUZZ
    @given(doc=preset_doc)
    @example(doc={"optimizers": ["alto"], "lr_grid": {"sgd": [0.1]}})
    @example(doc={"optimizers": [], "seeds": 1})
    @example(doc={"optimizers": ["sgd"], "sweep": {"batch_size": []}})
    def check(doc):
        try:
            parse_preset(doc)
        except ValueError as err:
            outcome["ValueError"] += 1
            assert _preset_names_field(str(err), doc), f"{doc!r}: {err}"
            return
        outcome["accepted"] += 1

    check()
    print(f"\nFUZZ parse_preset dicts: {sum(outcome.values())} examples ({dict(outcome)})")
    assert sum(outcome.values()) >= 100 and outcome["accepted"] and outcome["ValueError"]


# -- presets: TOML text written by hand --------------------------------------------------------------

def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc: dict, *, tables: bool) -> str:
    """Top-level scalars/arrays as `key = value`; tables as [section] headers (or inline tables)."""
    lines, sections = [], []
    for k, v in doc.items():
        if tables and isinstance(v, dict):
            sections.append((k, v))
        else:
            lines.append(f"{_toml_str(k)} = {toml_value(v)}")
    for k, table in sections:
        nested = [(kk, vv) for kk, vv in table.items() if isinstance(vv, dict) and k == "optimizer"]
        lines.append(f"[{_toml_str(k)}]")
        lines += [f"{_toml_str(kk)} = {toml_value(vv)}" for kk, vv in table.items() if (kk, vv) not in nested]
        for kk, vv in nested:  # [optimizer.alto] style
            lines.append(f"[{_toml_str(k)}.{_toml_str(kk)}]")
            lines += [f"{_toml_str(a)} = {toml_value(b)}" for a, b in vv.items()]
    return "\n".join(lines) + "\n"


toml_scalar = st.one_of(st.booleans(), ints, floats, short_text, realistic)
toml_any = st.recursive(toml_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(short_text, inner, max_size=3)),
                        max_leaves=6)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _toml_safe(v) -> bool:
    """No None (TOML has no null) and no tuples (written as arrays, read back as lists)."""
    if v is None or isinstance(v, tuple):
        return False
    if isinstance(v, dict):
        return all(_toml_safe(x) for x in v.values())
    if isinstance(v, list):
        return all(_toml_safe(x) for x in v)
    return True


def test_load_preset_random_toml_text(tmp_path):
    outcome: Counter = Counter()
    path = tmp_path / "fuzz.toml"

    @FUZZ
    @given(doc=preset_doc.filter(_toml_safe), tables=st.booleans())
    def check(doc, tables):
        text = toml_document(doc, tables=tables)
        assert _same(tomllib.loads(text), doc), text  # the hand-written TOML says what we meant
        path.write_text(text, encoding="utf-8")
        try:
            load_preset(path)
        except ValueError as err:
            outcome["ValueError"] += 1
            assert _preset_names_field(str(err), doc), f"{text}\n-> {err}"
            return
        outcome["accepted"] += 1

    check()
    print(f"\nFUZZ load_preset TOML text: {sum(outcome.values())} examples ({dict(outcome)})")
    assert sum(outcome.values()) >= 100 and outcome["accepted"] and outcome["ValueError"]


toml_tokens = st.lists(st.sampled_from([
    "[run]", "[optimizer.alto]", "[lr_grid]", "[[x]]", "\n", " = ", "=", '"', "'", "'''", '"""', "[", "]", "{", "}",
    ",", ".", "seeds", "optimizers", "run", "lr", "max_steps", "1", "-1", "1e400", "0x1f", "inf", "nan", "true",
    "1979-05-27T07:32:00Z", "#", "\\u0000", "\x00", "é", "\ufeff"]), max_size=30).map("".join)


def test_load_preset_random_bytes(tmp_path):
    outcome: Counter = Counter()
    path = tmp_path / "bytes.toml"

    @FUZZ
    @given(blob=st.one_of(st.binary(max_size=300), toml_tokens.map(lambda s: s.encode("utf-8", "surrogatepass")),
                          st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))))
    @example(blob=b"\xff\xfe\x00")
    @example(blob=b'optimizers = ["sgd"]\nseeds = 1\n[run]\nmax_steps = 1e400\n')
    def check(blob):
        path.write_bytes(blob)
        try:
            load_preset(path)
        except ValueError as err:
            outcome["ValueError"] += 1
            msg = str(err)
            assert "cannot read it as TOML" in msg or _preset_names_field(msg, {}), msg
            return
        outcome["accepted"] += 1

    check()
    print(f"\nFUZZ load_preset random bytes: {sum(outcome.values())} examples ({dict(outcome)})")
    assert sum(outcome.values()) >= 100 and outcome["ValueError"]


# -- RoiInputs -----------------------------------------------------------------------------------------

ROI_GOOD = dict(speedup=1.5, speedup_low=1.2, speedup_high=1.8, evidence="faster", gpu_hourly_price=2.5, gpus_per_job=8,
                baseline_hours_per_job=24.0, jobs_per_year=50, energy_kwh_per_gpu_hour=0.7, carbon_kg_per_kwh=0.4)
roi_value = st.one_of(st.none(), st.booleans(), ints, floats, short_text, st.lists(floats, max_size=2),
                      st.complex_numbers(max_magnitude=10), st.sampled_from([0, 1, 1.0, 0.5, 2, -1, 1e308]),
                      st.decimals(allow_nan=True, places=3), st.fractions(max_value=10))


def test_roi_inputs_random_fields():
    outcome: Counter = Counter()

    @FUZZ
    @given(fields=st.dictionaries(st.sampled_from(sorted(ROI_GOOD)), roi_value, min_size=1, max_size=3))
    @example(fields={"speedup": 3.0})
    @example(fields={"jobs_per_year": 2.5})
    def check(fields):
        try:
            RoiInputs(**{**ROI_GOOD, **fields})
        except ValueError as err:
            outcome["ValueError"] += 1
            assert names_field(str(err), *fields), f"{fields!r}: {err}"
            return
        outcome["accepted"] += 1

    check()
    print(f"\nFUZZ RoiInputs: {sum(outcome.values())} examples ({dict(outcome)})")
    assert sum(outcome.values()) >= 100 and outcome["accepted"] and outcome["ValueError"]


# -- inputs that once escaped as other exceptions (fixed; kept as regression tests) -------------------------------------------------------------

HUGE = 10 ** 400  # a valid Python int, and a valid TOML integer for tomllib, beyond float range


@pytest.mark.parametrize("field", ["lr", "epochs", "gamma", "val_fraction"])
def test_runconfig_huge_int_in_a_float_field_is_a_value_error(field):
    with pytest.raises(ValueError, match=field):
        RunConfig(**{field: HUGE})


@pytest.mark.parametrize("field", ["speedup", "gpu_hourly_price", "gpus_per_job", "jobs_per_year"])
def test_roi_huge_int_is_a_value_error(field):
    with pytest.raises(ValueError, match=field):
        RoiInputs(**{**ROI_GOOD, field: HUGE})


@pytest.mark.parametrize("text", [
    'optimizers = [{}]\n',
    'optimizers = [[1]]\n',
    'optimizers = ["alto"]\n[optimizer]\nalto = 5\n',
    'optimizers = ["alto"]\n[run]\nhparams = 5\n',
], ids=["table-as-optimizer", "array-as-optimizer", "optimizer-setting-not-a-table", "hparams-not-a-table"])
def test_preset_shapes_that_crash_expand_are_value_errors(text, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="optimizer|hparams"):
        load_preset(path)


@pytest.mark.parametrize("text", ["x = " + "[" * 5000, "x = " + "{a=" * 3000], ids=["arrays", "inline-tables"])
def test_deeply_nested_toml_is_a_value_error(text, tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="TOML"):
        load_preset(path)
