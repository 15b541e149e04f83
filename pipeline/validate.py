"""validate stage: check the whole of params.yaml before any other stage runs.

Every other stage depends on this stage's output, ``data/params.ok``, whose content does not
change while the params are valid. DVC deletes a stage's outputs before it runs the stage's
command, so validating inside each stage came too late: an invalid params.yaml would have cost
the trained models. Here an invalid file stops ``dvc repro`` / ``dvc exp run`` with one line
before any output is touched, and a valid edit re-runs only the stages whose params changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genduel import config
from genduel.errors import GenDuelError
from genduel.io import atomic_write

#: The output's content: the same bytes whenever params.yaml is valid.
OK = b"params.yaml is valid (checked by the validate stage, pipeline/validate.py)\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/params.ok"))
    args = parser.parse_args(argv)

    # The one-line contract of genduel.stage.run_stage, without importing torch: this stage runs
    # before every `dvc repro` that follows an edit of params.yaml, so it starts in ~0.3 s.
    try:
        config.check_file(args.params)
        atomic_write(args.out, OK)
    except GenDuelError as exc:
        sys.stderr.write(f"genduel validate: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("genduel validate: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
