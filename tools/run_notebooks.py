"""Execute the example notebooks the way a reader would, so they can't rot.

    python tools/run_notebooks.py [NOTEBOOK.ipynb ...]    (default: examples/*.ipynb)

Each notebook runs top to bottom in a fresh Jupyter kernel of this Python
(nbclient; needs nbclient, ipykernel, and ipywidgets for tqdm's widget).  A
notebook fails on any cell error (its asserts included) and on any output to
stderr (warnings included: fastbp promises none in normal use).  Prints what
each code cell showed (text, widget, image), one line per cell.  The
notebooks are not rewritten: the executed copy is thrown away.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(path, timeout=600):
    """Execute ``path``; returns a list of problems (empty: it passed)."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as sockets:
        # IPC transport (Unix sockets, absolute paths): a local kernel needs no
        # TCP ports, and ipykernel warns about unencrypted TCP
        manager = KernelManager(kernel_name="python3", transport="ipc",
                                ip=os.path.join(sockets, "kernel"))
        client = NotebookClient(nb, timeout=timeout, km=manager,
                                resources={"metadata": {"path": str(Path(path).parent)}})
        try:
            client.execute()
        except CellExecutionError as exc:
            return [f"cell failed:\n{exc}"]
        finally:      # a kernel manager handed to nbclient is ours to shut down
            if manager.has_kernel:
                manager.shutdown_kernel()
    problems = []
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        kinds = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                problems.append(f"code cell {number + 1} wrote to stderr:\n{out.text}")
            kinds += [out.output_type] if out.output_type == "stream" else list(out.get("data", {}))
        print(f"  cell {number + 1}: {', '.join(dict.fromkeys(kinds)) or 'no output'}")
    return problems


def main(argv):
    paths = argv or sorted(str(p) for p in (ROOT / "examples").glob("*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        start = time.perf_counter()
        print(f"{path}:")
        problems = run(path)
        status = "FAILED" if problems else "ok"
        print(f"  {status} in {time.perf_counter() - start:.1f} s")
        for problem in problems:
            print(problem, file=sys.stderr)
        failed += bool(problems)
    print(f"{len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
