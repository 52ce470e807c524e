"""`backup-engine drill --pg-version N`: the whole drill inside the server image of that
PostgreSQL major version, for versions this host has no packages of.

The PostgreSQL client programs must match the server (pg_basebackup 15 cannot back up a 17
server), and the tool runs beside the server anyway (archive_command, restore_command), so the
drill runs in the image with its own PostgreSQL, Redis and Python: the local backend, inside.
The checkout is mounted at its own path and read from there; the image brings the Python
packages (the trixie image's /opt/restore-drill, built by scripts/build-test-image.sh), or, in
the bookworm image, whose python3 is the host's, the host's virtualenv is mounted too. Evidence
is written to the report directory on the host, as for any drill.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from backup_engine.errors import ConfigError, MissingBinary

IMAGES = {15: "restore-drill/servers:bookworm", 17: "restore-drill/servers:trixie"}
IMAGE_VENV = "/opt/restore-drill"
PASSED_ON = ("BACKUP_ENGINE_", "AWS_", "DRILL_", "HYPOTHESIS_")


def image_for(major: int) -> str:
    """The image for PostgreSQL `major`: $DRILL_PG<major>_IMAGE, else the one built here."""
    image = os.environ.get(f"DRILL_PG{major}_IMAGE") or IMAGES.get(major)
    if image is None:
        raise ConfigError(
            f"no server image is known for PostgreSQL {major}",
            hint=f"set DRILL_PG{major}_IMAGE to an image with PostgreSQL {major}, or use "
            f"--pg-version {' or '.join(str(m) for m in IMAGES)}",
        )
    return image


def check_image(image: str) -> None:
    if shutil.which("docker") is None:
        raise MissingBinary("--pg-version runs the drill in a container: docker is not installed")
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if found.returncode != 0:
        reason = found.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(
            f"Docker image {image} is not available here"
            + (f" ({reason[-1]})" if reason and "No such image" not in reason[-1] else ""),
            hint="build it with scripts/build-test-image.sh all (needs a Docker engine)",
        )


def run_in_image(major: int, python_args: list[str], workdir: Path, paths: list[Path]) -> int:
    """Run `python PYTHON_ARGS` (`-m backup_engine drill ...`, a benchmark) in the image for
    `major`, with `workdir` and the directories `paths` (absolute: the report directory, files
    the arguments name) mounted at their own paths; its exit code."""
    image = image_for(major)
    check_image(image)
    checkout = Path(__file__).resolve().parents[2]
    mounts = {checkout, workdir.resolve(), *(p.resolve() for p in paths)}
    host_venv = Path(sys.prefix).resolve()
    if not host_venv.is_relative_to(checkout):
        mounts.add(host_venv)
    volumes = [arg for path in sorted(mounts) for arg in ("-v", f"{path}:{path}")]
    env = [arg for name in sorted(os.environ) if name.startswith(PASSED_ON)
           for arg in ("-e", name)]  # fmt: skip
    drill = shlex.join(python_args)
    # The image's own packages when it has them (its Python may differ from the host's), with
    # the checkout on their path; else the host's virtualenv, mounted.
    script = (
        f"if [ -x {IMAGE_VENV}/bin/python ]; then "
        f"echo {shlex.quote(str(checkout))} > "
        f"$({IMAGE_VENV}/bin/python -c 'import site; print(site.getsitepackages()[0])')"
        f"/restore-drill-checkout.pth && exec {IMAGE_VENV}/bin/python {drill}; "
        f"else exec {shlex.quote(sys.executable)} {drill}; fi"
    )
    # --init: servers a drill leaves behind are reparented to PID 1, which must reap them (a
    # zombie postmaster still "exists" for kill -0, and a drill waiting for it to go would hang).
    argv = ["docker", "run", "--rm", "--init", "--network", "host", "--tmpfs", "/dev/shm:size=256m",
            "-w", str(workdir.resolve()), "-e", "PYTHONDONTWRITEBYTECODE=1", *env, *volumes,
            image, "sh", "-c", script]  # fmt: skip
    return subprocess.run(argv, check=False).returncode


# Drill options whose flag is not the parameter's name.
_FLAGS = {"features_dir": "--features", "check_only": "--check", "controls_file": "--controls",
          "keyword": "-k", "config_file": "--config"}  # fmt: skip


def drill_in_image(
    major: int, params: dict[str, object], report_dir: Path, config: Path | None
) -> int:
    """`backup-engine drill` with the options `params` (click's, of this very command), run
    in the image for `major` with the local backend; the evidence goes to `report_dir`."""
    check_image(image_for(major))  # before anything is created
    report_dir.mkdir(parents=True, exist_ok=True)
    args, paths = ["--report-dir", str(report_dir)], [report_dir]
    for name, value in params.items():
        skipped = ("pg_version", "backend", "report_dir", "report_root")
        if name in skipped or value in (None, False):
            continue
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, Path):
            value = value.absolute()
            paths.append(value if value.is_dir() else value.parent)
        args += [flag] if value is True else [flag, str(value)]
    if config is not None:
        paths.append(config.absolute().parent)
    drill = ["-m", "backup_engine", "drill", "--backend", "local", *args]
    return run_in_image(major, drill, Path.cwd(), paths)
