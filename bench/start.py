"""Benchmark: how fast digest starts.

In one run, each in fresh processes:
- `python -c pass`, the reference: what any Python program pays to start;
- `digest --help` and `digest --version` (`python -m digest ...`), as a ratio to the
  reference: they import no command's module (digest/cli/root.py, COMMANDS);
- the first issue build in a fresh process (load the seeds, pick, render both templates,
  inline the CSS), after the modules it needs are imported, and those imports on their own:
  best and worst of 5 processes.

Targets: the first build at most 250 ms (the worst of 5); `digest --help` at most 3 times
the reference. The last line printed is one JSON object. Run it with
`.venv/bin/python bench/start.py`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_FIRST_BUILD_MS = 250.0
TARGET_HELP_RATIO = 3.0
RUNS = 5

# Run in a fresh interpreter: prints the import and the first build times in ms.
FIRST_BUILD = """
import time
started = time.perf_counter()
import datetime as dt
from digest.content.picker import pick
from digest.email.render import Renderer
from digest.options import render_options
from digest.pipeline import load_seeds
from digest.settings import load_settings
imported = time.perf_counter()
settings = load_settings()
loaded = load_seeds(settings)
issue = pick(loaded.articles, today=dt.date(2026, 11, 23), already_featured=set(),
             limits=settings.pick_limits)
Renderer(settings.templates_dir).render(issue, render_options(settings))
built = time.perf_counter()
print((imported - started) * 1000, (built - imported) * 1000)
"""


def wall_ms(command: list[str], runs: int = 10) -> list[float]:
    """Wall time of ``command`` in ms, ``runs`` times, from the repository root."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    python = sys.executable
    reference = wall_ms([python, "-c", "pass"])
    helped = wall_ms([python, "-m", "digest", "--help"])
    version = wall_ms([python, "-m", "digest", "--version"])
    firsts = []
    for _ in range(RUNS):
        done = subprocess.run(
            [python, "-c", FIRST_BUILD], cwd=REPO, check=True, capture_output=True, text=True
        )
        imported_ms, built_ms = map(float, done.stdout.split())
        firsts.append((imported_ms, built_ms))

    ref = statistics.median(reference)
    help_ms, version_ms = statistics.median(helped), statistics.median(version)
    builds = [built for _, built in firsts]
    imports = [imported for imported, _ in firsts]
    print(f"python -c pass:    {ref:6.1f} ms (median of {len(reference)})")
    print(f"digest --help:     {help_ms:6.1f} ms, {help_ms / ref:.1f}x the reference")
    print(f"digest --version:  {version_ms:6.1f} ms, {version_ms / ref:.1f}x the reference")
    print(
        f"first build in a fresh process: best {min(builds):.1f} ms, worst {max(builds):.1f} ms "
        f"(of {RUNS}); the imports it needs before: {min(imports):.0f} to {max(imports):.0f} ms"
    )
    print(
        f"target: first build <= {TARGET_FIRST_BUILD_MS:.0f} ms: "
        f"{'met' if max(builds) <= TARGET_FIRST_BUILD_MS else 'NOT met'}"
    )
    print(
        f"target: digest --help <= {TARGET_HELP_RATIO:.0f}x python -c pass: "
        f"{'met' if help_ms / ref <= TARGET_HELP_RATIO else 'NOT met'}"
    )
    print(
        json.dumps(
            {
                "python_ms": round(ref, 1),
                "help_ms": round(help_ms, 1),
                "help_ratio": round(help_ms / ref, 2),
                "version_ms": round(version_ms, 1),
                "first_build_best_ms": round(min(builds), 1),
                "first_build_worst_ms": round(max(builds), 1),
                "imports_best_ms": round(min(imports), 1),
                "imports_worst_ms": round(max(imports), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
