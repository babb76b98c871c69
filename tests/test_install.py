"""digest as an installed tool: a wheel in a fresh environment renders without the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .conftest import REPO, SEED

# What the wheel is built from: everything else in the checkout stays out of the build.
SOURCES = ("pyproject.toml", "README.md", "digest")


def run(
    command: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; on failure, fail the test with its output."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    if done.returncode != 0:
        pytest.fail(f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def build_wheel(tmp_path: Path) -> Path:
    # Built from a copy: an in-tree build would write build/ and digest.egg-info/ into the
    # checkout. No build isolation, so no network: setuptools comes from the test's venv.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    wheelhouse = tmp_path / "wheelhouse"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            wheelhouse,
            source,
        ]
    )
    (wheel,) = wheelhouse.glob("digest-*.whl")
    return wheel


def fresh_environment(tmp_path: Path, wheel: Path) -> Path:
    """A new venv with only the digest wheel installed; the dependencies come from ours."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            wheel,
        ]
    )
    # Installing the dependencies again would need the network. A path in a .pth file is
    # appended to sys.path; the .pth files there (our editable digest) are not processed.
    site_packages = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    (Path(site_packages) / "digest_test_dependencies.pth").write_text(ours + "\n")
    return venv


@pytest.mark.timeout(300)
def test_an_installed_wheel_previews_and_sends_an_issue_outside_the_repository(
    tmp_path: Path, clean_env: None
) -> None:
    venv = fresh_environment(tmp_path, build_wheel(tmp_path))
    work = tmp_path / "work"
    (work / "seeds").mkdir(parents=True)
    shutil.copy2(SEED, work / "seeds" / SEED.name)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DIGEST_", "PYTHON"))
    }
    environment["DIGEST_DATABASE_URL"] = f"sqlite:///{work / 'var' / 'digest.db'}"

    run([venv / "bin" / "digest", "preview"], cwd=work, env=environment)

    page = (work / "var" / "preview" / "digest.html").read_text(encoding="utf-8")
    assert "Bashar al-Assad" in page
    assert "airstrikes against IS" in page
    # And sends it, to the local outbox (a Maildir), as `make run` does in a checkout.
    run(
        [venv / "bin" / "digest", "subscribers", "add", "ann@example.org"],
        cwd=work,
        env=environment,
    )
    run([venv / "bin" / "digest", "send"], cwd=work, env=environment)
    sent = list((work / "var" / "outbox" / "new").iterdir())
    assert len(sent) == 1
    assert b"To: ann@example.org" in sent[0].read_bytes()
    # The code, templates and rules that ran are the installed ones, not the checkout's.
    probe = run(
        [
            venv / "bin" / "python",
            "-c",
            "import digest, digest.content.boilerplate, digest.email.render; "
            "print(digest.__file__, digest.email.render.BUILTIN_TEMPLATES, "
            "digest.content.boilerplate.BUILTIN_RULES, sep='\\n')",
        ],
        cwd=work,
        env=environment,
    )
    for line in probe.stdout.splitlines():
        path = Path(line).resolve()
        assert path.is_relative_to(venv.resolve()), path
        assert not path.is_relative_to(REPO), path
        assert path.exists(), path
