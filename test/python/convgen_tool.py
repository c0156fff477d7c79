"""Locating and running the built convgen tool from the Python tests."""
import json
import os
import subprocess
import sys
import unittest

SOURCE_DIR = os.environ.get("CONVGEN_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))


def convgen_tool():
    tool = os.environ.get("CONVGEN_TOOL")
    if not tool or not os.path.exists(tool):
        raise unittest.SkipTest("CONVGEN_TOOL is not set to the built convgen (run through ctest)")
    return tool


def convgen_list(npz, geometry=None):
    """`convgen --list --json` as a dict, asserting success."""
    args = [convgen_tool(), "--weights", npz, "--list", "--json"]
    if geometry:
        args += ["--geometry", geometry]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"convgen --list failed ({result.returncode}): {result.stderr}")
    return json.loads(result.stdout)
