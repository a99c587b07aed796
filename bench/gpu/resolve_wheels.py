import glob
import os
import pathlib
import re
import subprocess
import sys
import zipfile

from packaging.markers import default_environment
from packaging.requirements import Requirement

have = {x.strip() for x in pathlib.Path("device_pkgs.txt").read_text().splitlines() if x.strip()}
env = default_environment()
env.update(
    python_version="3.12",
    python_full_version="3.12.3",
    platform_machine="x86_64",
    sys_platform="linux",
    platform_system="Linux",
)
plat = [
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_27_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux1_x86_64",
    "--platform",
    "manylinux_2_24_x86_64",
    "--platform",
    "manylinux_2_31_x86_64",
    "--platform",
    "manylinux_2_34_x86_64",
    "--platform",
    "manylinux_2_35_x86_64",
    "--platform",
    "any",
]
skip = set(sys.argv[1:])
queue = ["vllm==0.26.0"]  # pins torch==2.11.0, the lent image's torch
seen = set()
got = {}


def norm(n):
    return re.sub(r"[-_.]+", "-", n).lower()


while queue:
    spec = queue.pop()
    req = Requirement(spec)
    n = norm(req.name)
    if n in seen or n in have or n in skip:
        continue
    seen.add(n)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *plat,
            "-d",
            "w",
            str(req),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        print("FAIL", spec, r.stderr.strip().splitlines()[-1:])
        continue
    whl = [f for f in glob.glob("w/*.whl") if norm(os.path.basename(f).split("-")[0]) == n]
    if not whl:
        print("nofile", spec)
        continue
    with zipfile.ZipFile(whl[0]) as z:
        meta = next(x for x in z.namelist() if x.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                d = Requirement(line.split(":", 1)[1].strip())
                e = dict(env, extra="")
                if d.marker is None or d.marker.evaluate(e):
                    queue.append(str(d).split(";")[0])
    print("got", spec)
