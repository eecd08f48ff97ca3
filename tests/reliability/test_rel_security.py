"""Security: loopback by default, no pickled code from checkpoints, no shell, parameterised SQL.

(The real-browser XSS checks and the listening-socket check of a running server are in
test_rel_browser.py, which shares one server between them.)

Static scans read the source of alto/ and app/ with `ast`:

* shell: no os.system / os.popen / subprocess.getoutput / getstatusoutput /
  asyncio.create_subprocess_shell; no call with a `shell=` keyword other than a literal False;
  the command given to subprocess.Popen/run/call/check_call/check_output is never a string
  (literal, f-string, concatenation, %, .format, .join), directly or through a variable, and
  when it comes from a helper function that helper returns list literals only.
* pickles: every torch.load passes weights_only=True literally; np.load never allow_pickle=True;
  pickle.load/loads only where listed in PICKLE_ALLOWED (with the reason).
* SQL (the rule): the SQL text given to execute/executemany/executescript (and the Store's
  _one/_all wrappers) must be built only from string literals, module constants, `?`
  placeholders (`",".join("?" * n)`), loop variables over literal tuples, local variables that are
  themselves built that way (assignments, `+=`, `.append`), and parameters whose every call site in
  the same file passes such text. Anything else must be listed in SQL_IDENTIFIERS with where its
  value is checked, and that check is exercised by test_sql_identifier_checks_refuse_injection.
  Values never enter SQL text: they are bound parameters.
"""
from __future__ import annotations

import ast
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from alto.cli import build_parser
from alto.store import Store
from alto.train.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from rel_support import ROOT

SOURCES = sorted([*(ROOT / "alto").rglob("*.py"), *(ROOT / "app").rglob("*.py")])


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _functions(tree: ast.Module):
    """(function node, its parents' names) for every def, methods and nested ones included."""
    stack = [(tree, ())]
    while stack:
        node, names = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield child
                stack.append((child, (*names, child.name)))
            else:
                stack.append((child, names))


def _enclosing(tree: ast.Module) -> dict[int, ast.AST]:
    """id(node) -> innermost enclosing function (or the module)."""
    owner: dict[int, ast.AST] = {}

    def walk(node, fn):
        for child in ast.iter_child_nodes(node):
            owner[id(child)] = fn
            walk(child, child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn)

    walk(tree, tree)
    return owner


# -- loopback default -----------------------------------------------------------------------------

def test_cli_binds_loopback_unless_asked():
    assert build_parser().parse_args(["app"]).host == "127.0.0.1"
    assert build_parser().parse_args(["app", "--host", "0.0.0.0"]).host == "0.0.0.0"  # only when asked
    makefile = (ROOT / "Makefile").read_text()
    assert "HOST   ?= 127.0.0.1" in makefile or "HOST ?= 127.0.0.1" in makefile
    print("\nSECURITY cli: `alto app` --host default 127.0.0.1; Makefile HOST default 127.0.0.1")


# -- checkpoints ------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this calls os.makedirs(marker): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _armed_file(path: Path, marker: Path, *, weights_only_shape: bool) -> Path:
    model = nn.Linear(2, 2)
    state = {"model": model.state_dict(), "config": {}, "planted": _Payload(marker)}
    if weights_only_shape:
        state.update(step=1, wall_s=0.0, optimizer=torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
                     cpu_rng=torch.get_rng_state(), text_rng=torch.get_rng_state())
    torch.save(state, path)
    return path


def test_checkpoints_refuse_pickled_code(tmp_path):
    # the product's own files load fine
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator()

    class _Cfg:
        def to_dict(self):
            return {"lr": 0.1}

    save_checkpoint(tmp_path / "ok.pt", model, opt, gen, 3, 1.5, _Cfg())
    assert load_checkpoint(tmp_path / "ok.pt", model, opt, gen) == (3, 1.5)
    save_weights(tmp_path / "ok_w.pt", model, _Cfg())
    assert load_weights(tmp_path / "ok_w.pt", model) == {"lr": 0.1}

    # the planted payload really runs code when a file is unpickled without weights_only
    armed_marker = tmp_path / "armed-marker"
    torch.load(_armed_file(tmp_path / "armed.pt", armed_marker, weights_only_shape=True), weights_only=False)
    assert armed_marker.exists()

    refused = []
    for loader, name in ((lambda p: load_checkpoint(p, model, opt, gen), "load_checkpoint"),
                         (lambda p: load_weights(p, model), "load_weights")):
        marker = tmp_path / f"marker-{name}"
        path = _armed_file(tmp_path / f"evil-{name}.pt", marker, weights_only_shape=True)
        with pytest.raises(Exception) as err:
            loader(path)
        assert "weights_only" in str(err.value) or "Unsupported global" in str(err.value), err.value
        assert not marker.exists(), f"{name} ran the pickled code"
        refused.append(f"{name}: {type(err.value).__name__}")
    print(f"\nSECURITY checkpoints: planted os.makedirs payload refused ({'; '.join(refused)}), marker not created")


PICKLE_ALLOWED = {
    # torchvision's own CIFAR format is a pickle; these files are ones the user put into the data
    # folder (or torchvision downloaded), exactly the trust torchvision itself gives them.
    ("alto/data/cifar.py", "pickle.load"),
}


def test_torch_load_always_weights_only_and_no_stray_unpickling():
    torch_loads, findings, seen_pickle = 0, [], set()
    for path in SOURCES:
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{_rel(path)}:{node.lineno}"
            if name in ("torch.load", "torch.serialization.load"):
                torch_loads += 1
                flag = kw.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    findings.append(f"{where}: {name} without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "dill.load", "dill.loads", "joblib.load", "cloudpickle.load"):
                seen_pickle.add((_rel(path), name))
                if (_rel(path), name) not in PICKLE_ALLOWED:
                    findings.append(f"{where}: {name}")
            elif name in ("np.load", "numpy.load"):
                flag = kw.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    findings.append(f"{where}: {name} with allow_pickle")
    assert findings == []
    assert torch_loads >= 2  # the checkpoint loaders are in the scan
    print(f"\nSECURITY unpickling: {torch_loads} torch.load calls, all weights_only=True; "
          f"pickle.load only at {sorted(seen_pickle)} (user-supplied CIFAR files, as torchvision)")


# -- shell ------------------------------------------------------------------------------------------

FORBIDDEN_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                   "asyncio.create_subprocess_shell", "eval", "exec", "os.popen2", "os.popen3", "commands.getoutput"}
RUNNERS = {"subprocess.Popen", "subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
           "Popen", "run", "call", "check_call", "check_output"}
EXECS = {"os.execv", "os.execve", "os.execvp", "os.execvpe"}  # (path, argv, ...): the argv is checked


def _assignments(fn: ast.AST, name: str) -> list[ast.AST]:
    values = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    values.append(node.value)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            values.append(node.value)
    return values


def _string_built(expr: ast.AST, fn: ast.AST, defs: dict[str, list[ast.AST]], depth: int = 0) -> str | None:
    """Why `expr` (a command) is or may be a string; None when it is a list/tuple of arguments."""
    if depth > 5:
        return "too indirect to check"
    if isinstance(expr, (ast.List, ast.Tuple, ast.ListComp)):
        return None
    if isinstance(expr, ast.Constant):
        return "a string literal" if isinstance(expr.value, str) else f"a constant {expr.value!r}"
    if isinstance(expr, ast.JoinedStr):
        return "an f-string"
    if isinstance(expr, ast.BinOp):
        if isinstance(expr.op, ast.Mod):
            return "%-formatting"
        if isinstance(expr.op, ast.Add):
            return _string_built(expr.left, fn, defs, depth + 1) or _string_built(expr.right, fn, defs, depth + 1)
    if isinstance(expr, ast.Name):
        values = _assignments(fn, expr.id)
        if not values:
            return f"{expr.id} comes from outside the function"
        for value in values:
            why = _string_built(value, fn, defs, depth + 1)
            if why:
                return f"{expr.id} is {why}"
        return None
    if isinstance(expr, ast.Call):
        func = _dotted(expr.func)
        if func.endswith((".format", ".join")) or func in ("str", "shlex.join"):
            return f"built by {func}()"
        helper = func.rsplit(".", 1)[-1]
        if helper in defs:  # a helper of ours: every return must be a list literal
            for fdef in defs[helper]:
                returns = [n.value for n in ast.walk(fdef) if isinstance(n, ast.Return)]
                if not returns or any(not isinstance(r, (ast.List, ast.ListComp)) for r in returns):
                    return f"{func}() may return something other than a list"
            return None
        return f"the result of {func}()"
    return f"an expression of type {type(expr).__name__}"


def test_no_shell_and_no_string_built_commands():
    trees = {path: _parse(path) for path in SOURCES}
    defs: dict[str, list[ast.AST]] = {}
    for tree in trees.values():
        for fn in _functions(tree):
            defs.setdefault(fn.name, []).append(fn)
    findings, launches = [], []
    for path, tree in trees.items():
        owner = _enclosing(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            where = f"{_rel(path)}:{node.lineno}"
            if name in FORBIDDEN_CALLS:
                findings.append(f"{where}: {name}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    findings.append(f"{where}: {name}(shell=...)")
            if name in EXECS:
                command = node.args[1] if len(node.args) > 1 else None
            elif name in RUNNERS and (name.startswith("subprocess.") or "subprocess" in path.read_text()):
                if name in ("run", "call") and not name.startswith("subprocess."):
                    continue  # a bare run()/call() that is not subprocess's
                command = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
            else:
                continue
            if command is None:
                findings.append(f"{where}: {name}() without a command")
                continue
            why = _string_built(command, owner[id(node)], defs)
            if why:
                findings.append(f"{where}: {name}() command is {why}")
            launches.append(where)
    assert findings == [], findings
    assert len(launches) >= 3  # supervisor runs + jobs, cli app (exec) / torchrun: the scan sees them
    print(f"\nSECURITY shell: {len(SOURCES)} files scanned; {len(launches)} subprocess launches, all argv lists, "
          f"no shell=True / os.system / os.popen / eval / exec")


# -- SQL --------------------------------------------------------------------------------------------

SQL_SINKS = {"execute", "executemany", "executescript", "_one", "_all"}

# (file, function, name) -> where the value is checked before it reaches SQL text
SQL_IDENTIFIERS = {
    ("alto/store/store.py", "_update", "name"): "keys of **fields checked against RUN_FIELDS / JOB_FIELDS first",
    ("alto/store/store.py", "_update", "table"): "only 'runs' or 'jobs', from update_run(_if) / update_job(_if) / _claim",
    ("alto/store/queries.py", "series", "x"): "x checked against X_AXES by Store._series_args (its only caller)",
}


class _SqlChecker:
    def __init__(self, path: Path, tree: ast.Module):
        self.rel = _rel(path)
        self.tree = tree
        self.owner = _enclosing(tree)
        self.consts = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) \
                    and self._literal(node.value):
                self.consts.update(t.id for t in node.targets)
        self.defs: dict[str, list[ast.AST]] = {}
        for fn in _functions(tree):
            self.defs.setdefault(fn.name, []).append(fn)
        self.used_whitelist: set = set()

    @staticmethod
    def _literal(node) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool)
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(_SqlChecker._literal(e) for e in node.elts)
        return False

    def _bindings(self, fn, name):
        """Every expression `name` may hold inside fn: assignments, +=, .append/.extend, loop items."""
        out = []
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    out += self._unpack(target, node.value, name)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                out.append(("value", node.value))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name \
                    and node.value is not None:
                out.append(("value", node.value))
            elif isinstance(node, ast.For):
                out += [("item", v) for _, v in self._unpack(node.target, node.iter, name, iterating=True)]
            elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
                for gen in node.generators:
                    out += [("item", v) for _, v in self._unpack(gen.target, gen.iter, name, iterating=True)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == name \
                    and node.func.attr in ("append", "extend", "insert"):
                arg = node.args[-1]
                out.append(("value", arg) if node.func.attr != "extend" else ("item", arg))
        return out

    def _unpack(self, target, value, name, iterating=False):
        """Values `name` gets when `target` = value (or `for target in value`)."""
        if isinstance(target, ast.Name):
            if target.id != name:
                return []
            return [("item" if iterating else "value", value)]
        if isinstance(target, ast.Tuple):
            out = []
            for i, sub in enumerate(target.elts):
                parts = self._component(value, i, iterating)
                if parts is None:
                    if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(sub)):
                        out.append(("value", ast.Name(id="<unknown>")))
                    continue
                for part in parts:
                    out += [("value", v) for _, v in self._unpack(sub, part, name)]
            return out
        return []

    def _component(self, value, i, iterating):
        if iterating:
            if isinstance(value, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Tuple) for e in value.elts):
                return [e.elts[i] for e in value.elts]
            return None
        if isinstance(value, ast.Tuple):
            return [value.elts[i]]
        if isinstance(value, ast.IfExp):
            a, b = self._component(value.body, i, False), self._component(value.orelse, i, False)
            return None if a is None or b is None else a + b
        return None

    def safe(self, expr, fn, seen=frozenset(), depth=0) -> str | None:
        """None if expr can only be SQL text we wrote; else why not."""
        if depth > 12:
            return "too indirect"
        if isinstance(expr, ast.Constant):
            return None
        if isinstance(expr, ast.JoinedStr):
            for part in expr.values:
                why = self.safe(part, fn, seen, depth + 1)
                if why:
                    return why
            return None
        if isinstance(expr, ast.FormattedValue):
            return self.safe(expr.value, fn, seen, depth + 1)
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, ast.Mult) and any(isinstance(s, ast.Constant) and isinstance(s.value, str)
                                                     for s in (expr.left, expr.right)):
                return None  # "?" * n
            return self.safe(expr.left, fn, seen, depth + 1) or self.safe(expr.right, fn, seen, depth + 1)
        if isinstance(expr, ast.IfExp):
            return self.safe(expr.body, fn, seen, depth + 1) or self.safe(expr.orelse, fn, seen, depth + 1)
        if isinstance(expr, (ast.Tuple, ast.List)):
            for e in expr.elts:
                why = self.safe(e, fn, seen, depth + 1)
                if why:
                    return why
            return None
        if isinstance(expr, (ast.GeneratorExp, ast.ListComp)):
            return self.safe(expr.elt, fn, seen, depth + 1)
        if isinstance(expr, ast.Call):
            func = _dotted(expr.func)
            if func in ("len", "int", "float", "max", "min", "round"):
                return None  # numbers
            if isinstance(expr.func, ast.Attribute) and expr.func.attr == "join":
                return self.safe(expr.func.value, fn, seen, depth + 1) or (
                    self.safe(expr.args[0], fn, seen, depth + 1) if expr.args else None)
            return f"the result of {func or 'a call'}()"
        if isinstance(expr, ast.Name):
            return self._safe_name(expr.id, fn, seen, depth)
        return f"a {type(expr).__name__} expression"

    def _safe_name(self, name, fn, seen, depth):
        fname = getattr(fn, "name", "<module>")
        if (self.rel, fname, name) in SQL_IDENTIFIERS:
            self.used_whitelist.add((self.rel, fname, name))
            return None
        if (fname, name) in seen:
            return None  # recursion: judged by the other bindings
        seen = seen | {(fname, name)}
        bindings = self._bindings(fn, name) if fn is not self.tree else []
        if bindings:
            for _, value in bindings:
                why = self.safe(value, fn, seen, depth + 1)
                if why:
                    return f"{name} may be {why}"
            return None
        if name in self.consts:
            return None
        params = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)] \
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
        if name in params:
            return self._safe_param(fn, name, seen, depth)
        return f"{name} (in {fname}) comes from outside"

    def _safe_param(self, fn, name, seen, depth):
        """A parameter is safe when its default and every same-file call site give safe text."""
        positional = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
        offset = 1 if positional and positional[0] in ("self", "cls") else 0
        calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)
                 and _dotted(n.func).rsplit(".", 1)[-1] == fn.name]
        if not calls:
            return f"parameter {name} of {fn.name} (no caller in this file)"
        defaults = dict(zip(positional[::-1], fn.args.defaults[::-1]))
        defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
        for call in calls:
            caller = self.owner[id(call)]
            given = next((k.value for k in call.keywords if k.arg == name), None)
            if given is None and name in positional:
                index = positional.index(name) - offset
                if index < len(call.args):
                    given = call.args[index]
            if given is None:
                given = defaults.get(name)
                caller = fn
            if given is None:
                return f"parameter {name} of {fn.name}: a call passes it in a way this scan cannot follow"
            why = self.safe(given, caller, seen, depth + 1)
            if why:
                return f"parameter {name} of {fn.name}: {why} (line {call.lineno})"
        return None


def test_sql_text_is_literal_placeholders_or_checked_identifiers():
    findings, sites, interpolated = [], 0, 0
    used = set()
    for path in SOURCES:
        tree = _parse(path)
        checker = _SqlChecker(path, tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQL_SINKS and node.args):
                continue
            fn = checker.owner[id(node)]
            sql = node.args[0]
            if isinstance(sql, ast.Name) and isinstance(fn, ast.FunctionDef) and fn.name in ("_one", "_all") \
                    and sql.id == fn.args.args[1].arg:
                continue  # the wrappers themselves: their call sites are the sinks checked here
            sites += 1
            if not isinstance(sql, ast.Constant):
                interpolated += 1
            why = checker.safe(sql, fn)
            if why:
                findings.append(f"{_rel(path)}:{node.lineno}: SQL text built from {why}")
        used |= checker.used_whitelist
        if path.relative_to(ROOT).parts[0] == "app":
            assert not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in
                           ("execute", "executemany", "executescript") for n in ast.walk(tree)), \
                f"{_rel(path)} runs SQL itself (pages go through alto.store)"
    assert findings == [], "\n".join(findings)
    stale = set(SQL_IDENTIFIERS) - used
    assert not stale, f"whitelist entries no longer needed (remove them): {stale}"
    print(f"\nSECURITY SQL: {sites} execute/_one/_all call sites in alto/ and app/ ({interpolated} with built text); "
          f"all literal, placeholders or checked identifiers; {len(used)} whitelisted identifier sources, "
          f"each checked at runtime; no SQL in app/")


def test_sql_identifier_checks_refuse_injection(tmp_path):
    """The runtime checks behind SQL_IDENTIFIERS, and values bound (not spliced) everywhere else."""
    from alto.runner import JOB, RUN

    store = Store(tmp_path / "inj.db")
    evil = "x'); DROP TABLE runs; --"
    experiment = store.create_experiment(evil, notes=evil)
    run_id = store.add_run(experiment, name=evil, optimizer=evil, seed=0, lr=0.1, config={evil: evil}, tags=[evil])
    job_id = store.add_job("flatness", experiment_id=experiment, payload={evil: 1})
    for attempt in (lambda: store.update_run(run_id, **{"status = 'finished' --": 1}),
                    lambda: store.update_job(job_id, **{"status = 'finished' --": 1}),
                    lambda: store.series(run_id, "train/loss", x="step) UNION SELECT name FROM runs --"),
                    lambda: store.list_runs(status="queued' OR '1'='1"),
                    lambda: store.list_jobs(status="queued' OR '1'='1")):
        with pytest.raises(ValueError):
            attempt()
    for kind, row_id in ((RUN, run_id), (JOB, job_id)):  # the supervisor's conditional updates
        with pytest.raises(ValueError):
            kind.update_if(store, row_id, ("queued",), **{"status = 'crashed' --": 1})
    with store.writer(run_id) as w:
        w.log(0, {evil: 1.0, "train/loss": math.nan})
    store.set_notes(evil, run_id=run_id)
    run = store.get_run(run_id)
    assert run["name"] == run["optimizer"] == run["notes"] == evil and run["tags"] == [evil]
    assert run["config"] == {evil: evil} and store.get_experiment(experiment)["name"] == evil
    assert evil in store.metric_keys(run_id) and store.artifacts(kind="' OR 1=1 --") == []
    assert store.list_runs(status="queued")[0]["id"] == run_id  # nothing was changed by the attempts
    print("\nSECURITY SQL runtime: injected field names / x axis / status refused with ValueError; "
          "SQL-looking names, notes, tags, keys stored and read back verbatim")
