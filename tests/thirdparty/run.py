"""Runs the own test suites of popular pure-Python packages twice - as they are, and with every test
inside a region of its own (region.pytest_plugin) - and compares the outcomes test by test.

Every difference must be listed in tests/thirdparty/expected.txt with its reason; the run fails on a
difference that is not listed, and on a listed one that no longer happens (the list must stay true).
docs/python.md ("Third-party test suites inside regions") explains each listed difference.

    .venv/bin/python tests/thirdparty/run.py [--build build] [--work build/thirdparty] [package ...]

The sdists (pinned versions) come from PyPI once and are kept in the work folder, with a virtual
environment made by the interpreter running this script; region is imported from the build folder.
"""
import argparse
import os
import subprocess
import sys
import tarfile
import time
import venv
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# name, version, the tests' folder inside the sdist, what the tests need besides pytest
PACKAGES = [
    ("toolz", "1.2.0", "toolz/tests", []),
    ("cachetools", "8.0.2", "tests", []),
    ("boltons", "26.2.0", "tests", []),
    ("idna", "3.20", "tests", ["hypothesis"]),
    ("more-itertools", "11.2.1", "tests", []),
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run(*args, **kwargs):
    return subprocess.run([str(a) for a in args], check=True, **kwargs)


def prepare(work):
    """The sdists, unpacked, and a virtual environment with pytest, the packages and their test needs."""
    sdists = work / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    env_dir = work / "venv"
    python = env_dir / "bin" / "python"
    marker = env_dir / "installed.txt"
    wanted = "\n".join(f"{n}=={v}" for n, v, _, _ in PACKAGES)
    if marker.exists() and marker.read_text() == wanted:
        return python, sdists
    for name, version, _, _ in PACKAGES:
        if not any(sdists.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) and \
                not any(sdists.glob(f"{name}-{version}.tar.gz")):
            run(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                "--no-deps", "--no-binary", ":all:", f"{name}=={version}", "-d", sdists)
    if not python.exists():
        venv.create(env_dir, with_pip=True)
    needs = sorted({n for _, _, _, extra in PACKAGES for n in extra} | {"pytest"})
    archives = [next(iter(list(sdists.glob(f"{n.replace('-', '_')}-{v}.tar.gz")) +
                          list(sdists.glob(f"{n}-{v}.tar.gz")))) for n, v, _, _ in PACKAGES]
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *needs, *archives)
    marker.write_text(wanted)
    return python, sdists


def unpack(sdists, name, version):
    archive = next(iter(list(sdists.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) +
                        list(sdists.glob(f"{name}-{version}.tar.gz"))))
    target = sdists / archive.name[:-len(".tar.gz")]
    if not target.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(sdists, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(sdists)
    return target


def outcomes(junit):
    """{test id: outcome} from a JUnit XML report (passed, failed, error, skipped)."""
    result = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = "passed"
        if "error" in kinds:
            outcome = "error"
        elif "failure" in kinds:
            outcome = "failed"
        elif "skipped" in kinds:
            outcome = "skipped"
        if result.get(test) not in ("error", "failed"):   # a test with a teardown error appears twice
            result[test] = outcome
    return result


def suite(python, folder, tests, junit, build, in_regions):
    env = dict(os.environ, PYTHONPATH=str(build / "python"), PYTHONDONTWRITEBYTECODE="1")
    args = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", tests]
    if in_regions:
        args[4:4] = ["-p", "region.pytest_plugin"]
    start = time.monotonic()
    done = subprocess.run([str(a) for a in args], cwd=folder, env=env, capture_output=True, text=True)
    if not junit.exists():
        sys.exit(f"pytest did not run in {folder}:\n{done.stdout}\n{done.stderr}")
    return outcomes(junit), time.monotonic() - start, done.stdout


def expected_differences():
    expected = {}
    for line in (HERE / "expected.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            test, _, reason = line.partition(" ")
            expected[test] = reason.strip()
    return expected


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--work", default=str(ROOT / "build" / "thirdparty"))
    parser.add_argument("packages", nargs="*")
    options = parser.parse_args()
    build, work = Path(options.build).resolve(), Path(options.work).resolve()
    python, sdists = prepare(work)
    expected = expected_differences()
    seen, problems = set(), []
    print(f"{'package':16} {'tests':>7} {'plain':>8} {'regions':>8} {'s plain':>8} {'s regions':>9} differences")
    for name, version, tests, _ in PACKAGES:
        if options.packages and name not in options.packages:
            continue
        folder = unpack(sdists, name, version)
        plain, plain_s, _ = suite(python, folder, tests, work / f"{name}-plain.xml", build, False)
        regions, regions_s, log = suite(python, folder, tests, work / f"{name}-regions.xml", build, True)
        differing = sorted(t for t in plain.keys() | regions.keys() if plain.get(t) != regions.get(t))
        passed = sum(o == "passed" for o in plain.values())
        passed_in = sum(o == "passed" for o in regions.values())
        print(f"{name:16} {len(plain):7} {passed:8} {passed_in:8} {plain_s:8.1f} {regions_s:9.1f} {len(differing)}")
        for test in differing:
            key = f"{name}:{test}"
            seen.add(key)
            how = f"{plain.get(test, 'absent')} -> {regions.get(test, 'absent')}"
            if key in expected:
                print(f"    {how:22} {test}: {expected[key]}")
            else:
                problems.append(f"{key}: {how}, not in tests/thirdparty/expected.txt")
        if any(t not in regions for t in plain):
            problems.append(f"{name}: tests missing from the run inside regions")
    ran = {n for n, _, _, _ in PACKAGES if not options.packages or n in options.packages}
    for key in expected:
        if key.partition(":")[0] in ran and key not in seen:
            problems.append(f"{key}: listed in expected.txt but no longer differs (update the list)")
    if problems:
        print("\n".join(["", "third-party suites: FAILED"] + problems))
        sys.exit(1)
    print("third-party suites: every difference is expected")


if __name__ == "__main__":
    main()
