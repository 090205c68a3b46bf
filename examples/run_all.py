"""Run every example into out/ and list the files they wrote, one line each (`make demo`).

Graph pictures need the Graphviz `dot` program. When it is missing, this installs it if it runs as
root with apt-get available; otherwise it says how to install it, and the examples still write the
.dot files and every picture that needs no Graphviz. `--quick` runs the examples' quick modes.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The seed's order first, then any other example script in this folder.
SEED_ORDER = ["arithm", "sine", "mixed_sine", "curve_fit", "peak_separation", "backprop_animation",
              "classifier"]
EXAMPLES = SEED_ORDER + sorted(
    p.stem for p in HERE.glob("*.py")
    if p.stem not in SEED_ORDER and not p.stem.startswith("_") and p.stem != "run_all"
)
# Examples too long for a demo at full size: run on their own (`--quick` runs them here too).
ON_THEIR_OWN = {"dask_fit": "10^7 samples on a 2-process cluster, minutes"}


def ensure_graphviz():
    """True when `dot` is available, installing the Debian package first if we can."""
    if shutil.which("dot"):
        return True
    can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if can_install:
        print("Graphviz `dot` not found: installing the graphviz package with apt-get ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "graphviz"]):
            if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                print(f"`{' '.join(command)}` failed", flush=True)
                break
        if shutil.which("dot"):
            return True
    print("Graphviz `dot` is not installed, so graphs are written as .dot files only. Install it with\n"
          "  sudo apt-get install graphviz     (Debian/Ubuntu)\n"
          "  brew install graphviz             (macOS)\n"
          "and run `make demo` again to get the rendered pictures.", flush=True)
    return False


def main():
    quick = "--quick" in sys.argv[1:]
    out = Path("out")
    out.mkdir(exist_ok=True)
    ensure_graphviz()
    written, failed = [], []
    for name in EXAMPLES:
        print(f"== examples/{name}.py", flush=True)
        if name in ON_THEIR_OWN and not quick:
            print(f"   not in the demo ({ON_THEIR_OWN[name]}): run python examples/{name}.py", flush=True)
            continue
        start = time.perf_counter()
        command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out)]
        if quick:
            command.append("--quick")
        # Scripts that read their options from the environment get the same ones.
        env = dict(os.environ, RUSTOGRAD_OUT=str(out), RUSTOGRAD_QUICK="1" if quick else "0",
                   MPLBACKEND="Agg")
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
        for line in result.stdout.splitlines():
            if line.startswith("wrote "):
                written.append(line[len("wrote "):])
            else:
                print(f"   {line}")
        if result.returncode != 0:
            failed.append(name)
        print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"\nFiles written ({len(written)}):")
    for path in written:
        print(f"  {path}")
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
