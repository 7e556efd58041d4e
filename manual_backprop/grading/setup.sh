#!/usr/bin/env bash
# Gradescope's setup script: runs once, when the autograder image is built.
#
# Put a wheel of this project in the autograder zip (`python -m pip wheel --no-deps .` in its
# checkout), beside run_autograder and assignment.toml. torch's CPU build keeps the image small;
# torch (and JAX, if you add it) confirm the truth of the assignment's network once per
# submission; without them the truth is confirmed by finite differences alone.
set -euo pipefail
apt-get update && apt-get install -y python3 python3-pip
python3 -m pip install /autograder/source/manual_backprop-*.whl
python3 -m pip install torch --index-url https://download.pytorch.org/whl/cpu
