"""Re-run, as a user would type them, the cases of the issue "Nothing lost, nothing wrong, no traceback" and record
for each: the exit status, the lines printed to stderr, and the files it left that were not there before.

Every case must end with one ``fwdlearn: error: ...`` line, a non-zero status and no new file (the two
marked ``expect_ok`` must succeed instead). Runs in a temporary folder on the embedded digits (short runs) and
small MNIST/FSDD/CIFAR folders written here; ``--full-disk`` cases need root to mount a 64 kB tmpfs and are
recorded as skipped otherwise.

    python benchmarks/bad_input_cases.py [--out benchmarks/results/issue17/bad_input_cases.json]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from fwdlearn.digest import network_digest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FSDD = ROOT.parent / "shared" / "data" / "fsdd"
KILL_AT = """
import os, signal, sys
import fwdlearn.{module} as target
real = target.{name}
def killed(*args, **kwargs):
    {before}
    os.kill(os.getpid(), signal.SIGKILL)
target.{name} = killed
from fwdlearn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def fwdlearn(args: list[str], cwd: Path, env: dict | None = None, kill: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m fwdlearn ARGS``; ``kill``: module, name and code run before a SIGKILL that replaces that function."""
    command = [sys.executable, "-m", "fwdlearn"] if kill is None else [sys.executable, "-c", KILL_AT.format(**kill)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FWDLEARN_")}
    full_env.update({"FWDLEARN_CACHE_DIR": str(cwd / ".cache"), "NUMBA_NUM_THREADS": "1"}, **(env or {}))
    return subprocess.run(command + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if ".cache" not in p.parts}


def idx_file(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def small_mnist(folder: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for prefix, n in (("train", 200), ("t10k", 50)):
        idx_file(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        idx_file(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), 2049)
    return folder


def preset(work: Path, name: str, **replace: str) -> str:
    text = (ROOT / "fwdlearn" / "presets" / f"{name}.toml").read_text()
    for old, new in replace.items():
        assert old in text, (name, old)
        text = text.replace(old, new)
    path = work / f"{name}-{abs(hash(tuple(replace.items()))) % 10**6}.toml"
    path.write_text(text)
    return str(path)


def prepare(work: Path) -> None:
    """Two finished digits runs (seeds 0 and 1), a finished LAC run: what the export cases start from."""
    short = ["--epochs", "5", "--probe-epochs", "10", "--no-progress"]
    for seed in (0, 1):
        assert fwdlearn(["train", "scff-mlp", "--seed", str(seed), "--out", f"A{seed}", *short], work).returncode == 0
    assert fwdlearn(["train", "lac-mlp", "--out", "lac", "--bp-epochs", "0", "--finetune-epochs", "0", *short],
                    work).returncode == 0


def cases(work: Path) -> list[dict]:
    """(name, what the user ran, how) for each numbered case of the issue."""
    checkpoint, lac = "A0/checkpoint.pt", "lac/checkpoint.pt"
    mnist_a, mnist_b = small_mnist(work / "mnist-a", 0), small_mnist(work / "mnist-b", 1)
    small = preset(work, "digits", **{'name = "digits"': 'name = "small"', "epochs = 60": "epochs = 2"})
    (work / "afile").write_text("a file")
    (work / "idx-dir").mkdir()
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(mnist_a / f"{name}.gz", work / "idx-dir")
    (work / "idx-dir" / "train-images-idx3-ubyte").mkdir()
    found = []

    def case(name: str, args: list[str], expect_ok: bool = False, **how) -> None:
        found.append({"case": name, "args": args, "expect_ok": expect_ok, **how})

    case("1. export A with B's read-out", ["export", checkpoint, "--readout", "A1/readout.pt"])
    case("1. train --fresh into A, killed while probing", ["train", "scff-mlp", "--out", "A1", "--fresh", "--epochs",
         "2", "--no-progress"], kill={"module": "eval.report", "name": "train_linear_probe", "before": "pass"},
         then=["export", "A1/checkpoint.pt"])
    case("1. LAC checkpoint with an SCFF read-out", ["export", lac, "--readout", "A0/readout.pt"])
    case("2. SCFF, lr 1e6", ["train", "scff-mlp", "--preset", preset(work, "digits", **{"lr = 1e-2": "lr = 1e6"}),
                             "--out", "nan-scff", "--no-progress"])
    case("2. LAC, lr 1e6", ["train", "lac-mlp", "--out", "nan-lac", "--no-progress", "--preset",
                            preset(work, "lac-digits", **{"hidden_lr = 1e-3": "hidden_lr = 1e6",
                                                          "output_lr = 1e-2": "output_lr = 1e6"})])
    case("2. export of a checkpoint whose weights are NaN", ["export", "nan-weights/checkpoint.pt"], nan_weights=True)
    case("3. train on a full disk", ["train", "scff-mlp", "--preset", small, "--out", "full/run", "--no-progress"],
         full_disk=True)
    case("3. eval on a full disk", ["eval", checkpoint, "--out", "full/eval", "--no-progress"], full_disk=True)
    case("4. kill -9 during a checkpoint write, then the same command", ["train", "scff-mlp", "--preset", small,
         "--out", "killed-write", "--no-progress"],
         kill={"module": "atomic", "name": "os.replace", "before": "pass"}, rerun=True, expect_ok=True)
    case("5. resume on another MNIST folder of the same counts",
         ["train", "scff-mlp", "--preset", small, "--dataset", "mnist", "--out", "other-data", "--data-dir",
          str(mnist_b), "--no-progress"], halted_on=str(mnist_a))
    case("6. --opset 5", ["export", checkpoint, "--opset", "5", "--out", "opset.onnx"])
    case("6. --opset 99", ["export", checkpoint, "--opset", "99", "--out", "opset.onnx"])
    case("6. a path under a file", ["train", "scff-mlp", "--preset", small, "--out", "afile/run", "--no-progress"])
    case("6. a data path that is a file", ["train", "scff-mlp", "--dataset", "mnist", "--data-dir", "afile"])
    case("6. an IDX name that is a folder", ["train", "scff-mlp", "--dataset", "mnist", "--data-dir", "idx-dir"])
    case("6. a checkpoint that is a folder", ["eval", "A0"])
    case("6. train --out checked before the data", ["train", "scff-mlp", "--dataset", "mnist", "--out", "afile/x"])
    case("6. bench --out checked before the sweep", ["bench", "--depth", "2", "--out", "afile/cost.json"])
    case("6. --sequence-length on an MLP", ["export", checkpoint, "--sequence-length", "5", "--out", "seq.onnx"])
    case("6. epochs = 0 in a preset", ["train", "scff-mlp", "--preset",
                                       preset(work, "digits", **{"epochs = 60": "epochs = 0"})])
    case("6. preset name '/abs/dir'", ["train", "scff-mlp", "--preset",
                                       preset(work, "digits", **{'name = "digits"': f'name = "{work}/abs/dir"'})])
    case("6. preset name '../..'", ["train", "scff-mlp", "--preset",
                                    preset(work, "digits", **{'name = "digits"': 'name = "../.."'})])
    case("6. an FSDD folder named like a recording", ["train", "scff-rnn", "--dataset", "fsdd", "--data-dir", "fsdd"],
         fsdd_folder=True)
    case("6. CIFAR batches re-pickled at protocol 2 (must load)", ["train", "scff-cnn", "--dataset", "cifar10",
         "--data-dir", "cifar", "--epochs", "1", "--probe-epochs", "1", "--no-progress", "--out", "cifar-run"],
         cifar=True, expect_ok=True)
    return found


def setup_case(case: dict, work: Path) -> None:
    if case.get("nan_weights"):
        payload = torch.load(work / "A0" / "checkpoint.pt", weights_only=True)
        payload["state"]["network"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                       for k, v in payload["state"]["network"].items()}
        (work / "nan-weights").mkdir()
        torch.save(payload, work / "nan-weights" / "checkpoint.pt")
        readout = torch.load(work / "A0" / "readout.pt", weights_only=True)   # bound to the NaN weights, as a
        readout["encoder_digest"] = network_digest(payload["state"]["network"])   # diverged run's would be
        torch.save(readout, work / "nan-weights" / "readout.pt")
    if case.get("fsdd_folder"):
        (work / "fsdd" / "recordings").mkdir(parents=True)
        for wav in sorted(SHARED_FSDD.rglob("*.wav"))[:6]:
            shutil.copy(wav, work / "fsdd" / "recordings")
        (work / "fsdd" / "recordings" / "0_jackson_49.wav").mkdir()
    if case.get("cifar"):
        folder = work / "cifar" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for name, n in [(f"data_batch_{i}", 20) for i in range(1, 6)] + [("test_batch", 20)]:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n)),
                     b"batch_label": name.encode()}
            batch[b"labels"] = [int(v) for v in batch[b"labels"]]
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        names = {b"label_names": [n.encode() for n in ("airplane automobile bird cat deer dog frog horse ship "
                                                       "truck").split()]}
        (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    if case.get("halted_on"):
        args = list(case["args"])
        args[args.index("--data-dir") + 1] = case["halted_on"]
        assert fwdlearn(args, work, env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"}).returncode == 137


def run_case(case: dict, work: Path) -> dict:
    setup_case(case, work)
    mount = work / "full"
    if case.get("full_disk"):
        mount.mkdir(exist_ok=True)
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                               capture_output=True).returncode:
            return {"case": case["case"], "skipped": "cannot mount a small tmpfs (needs root)"}
        with open(mount / "filler", "wb", buffering=0) as filler:   # the disk is full before the command starts
            try:
                while True:
                    filler.write(b"\0" * 1024)
            except OSError:
                pass
    try:
        before = snapshot(work)
        if case.get("kill"):
            killed = fwdlearn(case["args"], work, kill=case["kill"])
            assert killed.returncode == -9, killed.stderr[-500:]
            before = snapshot(work) if case.get("rerun") else before
        args = case.get("then") or case["args"]
        result = fwdlearn(args, work) if case.get("then") or not case.get("kill") or case.get("rerun") else killed
        left = sorted(snapshot(work) - before)
    finally:
        if case.get("full_disk"):
            subprocess.run(["umount", str(mount)], capture_output=True)
    lines = [line for line in result.stderr.strip().splitlines() if line]
    errors = [line for line in lines if line.startswith("fwdlearn: error: ")]
    if case["expect_ok"]:
        temporaries = [p for p in snapshot(work) if p.endswith(".tmp")]
        ok = result.returncode == 0 and not temporaries
    else:
        ok = result.returncode != 0 and len(lines) == 1 and len(errors) == 1 and not left
    return {"case": case["case"], "command": "fwdlearn " + " ".join(args), "exit_status": result.returncode,
            "stderr": lines[-3:], "new_files": left if not case["expect_ok"] else [], "as_required": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "issue17" / "bad_input_cases.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fwdlearn-cases-") as tmp:
        work = Path(tmp)
        prepare(work)
        records = []
        for case in cases(work):
            record = run_case(case, work)
            records.append(record)
            print(f"{'ok  ' if record.get('as_required') else 'SKIP' if 'skipped' in record else 'FAIL'} "
                  f"{record['case']}: {record.get('stderr', [record.get('skipped')])[-1:]}", flush=True)
    from fwdlearn.atomic import save_json
    save_json({"kind": "bad-input-cases", "command": "python benchmarks/bad_input_cases.py",
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "cases": records, "as_required": sum(bool(r.get("as_required")) for r in records),
               "skipped": sum("skipped" in r for r in records), "total": len(records)}, args.out)
    print(f"results: {args.out}")
    return 0 if all(r.get("as_required") or "skipped" in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
