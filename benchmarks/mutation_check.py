"""Mutation check: break one thing that makes a rule learn (or keeps it local, or guards it) and see a test go red.

    python benchmarks/mutation_check.py                      # every mutation, results to the JSON below
    python benchmarks/mutation_check.py --only ff-sign       # one mutation (names: --list)

The repository's files (tracked, and untracked ones git does not ignore) are copied to a temporary
folder once; each mutation then replaces one exact piece of source text there (the script stops with
an error if that text is not found exactly once, so it cannot silently test nothing), runs

    python -m pytest -q -x -p no:cacheprovider <tests>

with the copy as working directory and first on ``PYTHONPATH`` (so the copy's ``fwdlearn`` is the one
imported, not the editable install: checked before the mutations by a canary that breaks the copy's
package and must fail every test), and puts the file back. A mutation is *killed* when some test fails
(``killed_by`` names the first), *survived* when all pass. The unmutated copy must pass first. Results
(description, file, tests run, outcome, seconds) go to ``benchmarks/results/mutation/mutation_check.json``;
the exit status is 1 if any mutation survived.

The tests run per mutation are the ones that guard what the mutations break, cheapest first:
``tests/test_locality.py`` (every layer learns from its own objective), ``tests/test_learns.py`` (every
rule learns; sign and pair controls), the divergence guard's tests (``tests/test_nothing_lost.py``) and
the fused backend's equality to its autograd reference (``tests/test_fused_updates.py``: a mutation of
the reference path alone shows there); a listed file that does not exist is recorded as missing.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fwdlearn.atomic import save_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mutation" / "mutation_check.json"
# Locality, learning, and the divergence guard's tests (test_nothing_lost.py, "2. divergence").
TESTS = ["tests/test_locality.py", "tests/test_learns.py", "tests/test_nothing_lost.py", "tests/test_fused_updates.py"]
TIMEOUT = 1800   # seconds per pytest run


@dataclass(frozen=True)
class Mutation:
    """Replace ``find`` (which must occur exactly once in ``file``) by ``replace``; or, with ``function``,
    make the body of that module-level function a bare ``return`` (located with ``ast``)."""

    name: str
    description: str
    file: str
    find: str = ""
    replace: str = ""
    function: str = ""

    def apply(self, text: str) -> str:
        """The mutated source; it must still compile (a syntax error would be killed for the wrong reason)."""
        if self.function:
            mutated = _return_at_once(text, self.function, self.file)
        else:
            count = text.count(self.find)
            if count != 1:
                raise SystemExit(f"mutation {self.name}: the text to mutate occurs {count} times in {self.file} "
                                 f"(expected once): {self.find!r}")
            mutated = text.replace(self.find, self.replace)
        compile(mutated, self.file, "exec")
        return mutated


def _return_at_once(text: str, function: str, file: str) -> str:
    """``text`` with ``return`` inserted before the first statement of ``function``'s body (after its docstring):
    the rest of the body never runs."""
    found = [node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef) and node.name == function]
    if len(found) != 1:
        raise SystemExit(f"mutation of {function}(): {file} defines it {len(found)} times (expected once)")
    body = found[0].body
    first = body[1] if (len(body) > 1 and isinstance(body[0], ast.Expr)
                        and isinstance(getattr(body[0], "value", None), ast.Constant)) else body[0]
    lines = text.splitlines(keepends=True)
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}return\n")
    return "".join(lines)


SCFF_STEP = 'take_step([group], terms.loss)'
SCFF_FUSED_STEP = "layer.accumulate_gradients(projections, inputs, out.rows)"
SCFF_HANDED_ON = ("        with torch.no_grad():\n            z_pos = layer.combine(projections, batch.pos_left, "
                  "batch.pos_right, bias)")
RNN_FUSED_STEP = "take_fused_step(self.groups[DIRECTIONS[which]], set_gradients)"
FF_FUSED_STEP = "take_fused_step(group, lambda: layer.accumulate_gradients(projections, inputs, out.rows))"
FF_FUSED_PAIRS = 'out = scff_pair_gradient(projections, layer.linear.bias, k, None, k + n, None, theta, theta, 0.0, goodness="sum")'
LAC_HIDDEN = "contrast = layer_contrast(first[i], s_r, overwrite=True)"
LAC_OUTPUT = "output_loss = (reconstruction - reconstruction_target(x, self.config.target)).square().sum()"
LAC_PASS_ONE = "        with torch.no_grad():\n            a = network.flat_input(x)"


MUTATIONS = [
    # --- the sign of each rule's update: it then ascends its own objective (both backends) ---------------------
    Mutation("scff-mlp-sign", "scff-mlp: every layer's fused step on -R (MLP layers only)", "fwdlearn/rules/scff.py",
             SCFF_FUSED_STEP, "layer.accumulate_gradients(projections, inputs, "
                              "-out.rows if type(layer).__name__ == 'PairedLinear' else out.rows)"),
    Mutation("scff-cnn-sign", "scff-cnn: every layer's fused step on -R (conv layers only)", "fwdlearn/rules/scff.py",
             SCFF_FUSED_STEP, "layer.accumulate_gradients(projections, inputs, "
                              "-out.rows if type(layer).__name__ == 'PairedConv2d' else out.rows)"),
    Mutation("scff-sign-torch-backend", "scff-mlp/cnn, backend torch: every layer steps on -loss",
             "fwdlearn/rules/scff.py", SCFF_STEP, "take_step([group], -terms.loss)"),
    Mutation("scff-rnn-sign", "scff-rnn: both directions' fused steps on the negated gradient",
             "fwdlearn/rules/scff_rnn.py", RNN_FUSED_STEP,
             "take_fused_step(self.groups[DIRECTIONS[which]], lambda: (set_gradients(), "
             "[p.grad.neg_() for p in self.groups[DIRECTIONS[which]].parameters]))"),
    Mutation("ff-sign", "ff: every layer's fused step on -R", "fwdlearn/rules/ff.py",
             FF_FUSED_STEP, FF_FUSED_STEP.replace("out.rows)", "-out.rows)")),
    Mutation("lac-mlp-hidden-sign", "lac-mlp: the hidden layers ascend their activity contrast",
             "fwdlearn/rules/lac.py", LAC_HIDDEN, LAC_HIDDEN + " * (-1 if self.kind == 'mlp' else 1)"),
    Mutation("lac-conv-hidden-sign", "lac-conv: the hidden layers ascend their activity contrast",
             "fwdlearn/rules/lac.py", LAC_HIDDEN, LAC_HIDDEN + " * (-1 if self.kind == 'conv' else 1)"),
    Mutation("lac-mlp-output-sign", "lac-mlp: the output layer ascends the reconstruction error",
             "fwdlearn/rules/lac.py", LAC_OUTPUT, LAC_OUTPUT + " * (-1 if self.kind == 'mlp' else 1)"),
    Mutation("lac-conv-output-sign", "lac-conv: the output layer ascends the reconstruction error",
             "fwdlearn/rules/lac.py", LAC_OUTPUT, LAC_OUTPUT + " * (-1 if self.kind == 'conv' else 1)"),
    # --- positives and negatives swapped ---------------------------------------------------------------------
    Mutation("scff-pairs-swapped", "scff-mlp/cnn: positives [x_k, x_(k+s)], negatives [x_k, x_k] (pair builder)",
             "fwdlearn/objectives/scff.py", "return PairBatch(views, k, second, k, shifted)",
             "return PairBatch(views, k, shifted, k, second)"),
    Mutation("ff-pairs-swapped", "ff: the wrong-label samples trained as positives, the true-label ones as negatives",
             "fwdlearn/rules/ff.py", FF_FUSED_PAIRS, FF_FUSED_PAIRS.replace("k, None, k + n, None", "k + n, None, k, None")),
    # --- the detach between layers (between steps for the recurrent layer) -------------------------------------
    Mutation("scff-attached", "scff-mlp/cnn: a layer hands its pre-activations on with a graph (no no_grad, and "
             "the live bias parameter instead of the detached copy its projections were made beside)",
             "fwdlearn/rules/scff.py", SCFF_HANDED_ON,
             SCFF_HANDED_ON.replace("with torch.no_grad():", "if True:").replace("pos_right, bias)",
                                                                            "pos_right, layer.bias)")),
    Mutation("scff-rnn-attached", "scff-rnn: the states fed to each step keep their graph (no no_grad, no .detach(); "
             "removing .detach() alone inside no_grad changes nothing)", "fwdlearn/rules/scff_rnn.py",
             "with torch.no_grad():\n            return self.network.directions[which].run(drive.detach(), "
             "pair_lengths, keep_states=True)[1]",
             "return self.network.directions[which].run(drive, pair_lengths, keep_states=True)[1]"),
    Mutation("ff-attached", "ff, backend torch: a layer hands its activity on without .detach()", "fwdlearn/rules/ff.py",
             "h = layer.passed(out).detach()", "h = layer.passed(out)"),
    Mutation("lac-hidden-attached", "lac-mlp/conv: each hidden layer's pass-2 input without .detach()",
             "fwdlearn/rules/lac.py", "a = s_r.detach().relu_() if i + 1 < len(first) else None",
             "a = s_r.relu() if i + 1 < len(first) else None"),
    Mutation("lac-output-attached", "lac-mlp/conv: pass 1 with a graph: the output layer's input attached",
             "fwdlearn/rules/lac.py", LAC_PASS_ONE, LAC_PASS_ONE.replace("with torch.no_grad():", "if True:")),
    # --- the divergence guard ----------------------------------------------------------------------------------
    Mutation("no-divergence-guard", "learner.check_finite returns at once: NaN/inf losses and weights pass",
             "fwdlearn/learner.py", function="check_finite"),
]

# Breaks the copy's package at import: every test must fail, or the tests are not reading the copy.
CANARY = Mutation("canary", "the copy's fwdlearn fails at import", "fwdlearn/__init__.py", '__version__ = "',
                  'raise ImportError("mutation_check canary: the copy is imported")\n__version__ = "')


def copy_repository(into: Path) -> Path:
    """Tracked files and untracked ones git does not ignore, copied to ``into``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def run_tests(copy: Path, tests: list[str]) -> tuple[int, float, str]:
    """``pytest -x`` on ``tests`` in ``copy``: (its exit status, seconds, its output)."""
    path = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=copy,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return done.returncode, round(time.perf_counter() - started, 1), done.stdout + done.stderr


def first_failure(output: str) -> str:
    """The test pytest reports failed first (``FAILED``/``ERROR`` summary line), or its first error line."""
    lines = output.splitlines()
    for line in lines:
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    return next((line for line in lines if "Error" in line), lines[-1] if lines else "")


def imported_package(copy: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run([sys.executable, "-c", "import fwdlearn; print(fwdlearn.__file__)"], cwd=copy, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def check_mutation(copy: Path, mutation: Mutation, tests: list[str]) -> dict:
    path = copy / mutation.file
    original = path.read_text()
    path.write_text(mutation.apply(original))
    try:
        status, seconds, output = run_tests(copy, tests)
    finally:
        path.write_text(original)
    outcome = "survived" if status == 0 else "killed"
    killed_by = first_failure(output) if status else None
    print(f"  {mutation.name:24s} {outcome:8s} {seconds:7.1f} s  {killed_by or ''}", flush=True)
    return {"name": mutation.name, "description": mutation.description, "file": mutation.file, "tests": tests,
            "outcome": outcome, "seconds": seconds, "pytest_status": status, "killed_by": killed_by,
            "pytest_tail": output.strip().splitlines()[-3:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="names of the mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--dry-run", action="store_true", help="only check that every mutation applies and compiles")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.list:
        for mutation in MUTATIONS:
            print(f"{mutation.name:24s} {mutation.file:28s} {mutation.description}")
        return 0
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or []) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutation(s) {', '.join(sorted(unknown))}; --list names them")
    tests = [t for t in TESTS if (ROOT / t).is_file()]
    missing = [t for t in TESTS if t not in tests]
    with tempfile.TemporaryDirectory(prefix="fwdlearn-mutation-") as folder:
        copy = copy_repository(Path(folder))
        for mutation in [CANARY, *chosen]:       # every text to mutate is there, before anything runs
            mutation.apply((copy / mutation.file).read_text())
        if args.dry_run:
            print(f"{len(chosen)} mutations apply and compile")
            return 0
        package = imported_package(copy)
        if not package.startswith(str(copy)):
            raise SystemExit(f"the copy imports fwdlearn from {package}, not from {copy}")
        print(f"copy: {copy} (fwdlearn imported from {package}); tests: {' '.join(tests)}", flush=True)
        status, seconds, output = run_tests(copy, tests)
        if status:
            raise SystemExit(f"the unmutated copy fails its tests ({seconds} s): {first_failure(output)}")
        print(f"  {'unmutated':24s} {'passed':8s} {seconds:7.1f} s", flush=True)
        canary = check_mutation(copy, CANARY, tests)
        if canary["outcome"] != "killed":
            raise SystemExit("the canary survived: the tests do not import the copy's fwdlearn")
        results = [check_mutation(copy, mutation, tests) for mutation in chosen]
    document = {
        "kind": "mutation-check",
        "command": "python benchmarks/mutation_check.py" + (f" --only {' '.join(args.only)}" if args.only else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tests": tests, "tests_missing": missing,
        "baseline": {"outcome": "passed", "seconds": seconds}, "canary": canary,
        "mutations": results,
        "killed": sum(r["outcome"] == "killed" for r in results), "survived": [r["name"] for r in results
                                                                            if r["outcome"] == "survived"],
    }
    save_json(document, args.out)
    print(f"{document['killed']}/{len(results)} killed; results: {args.out}")
    return 1 if document["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
