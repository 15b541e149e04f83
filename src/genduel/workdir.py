"""A stage's work directory: outputs published whole at the stage's end, and resume state that
survives DVC deleting the stage's outputs.

DVC deletes a stage's outputs before it runs the command, and a stage that stops half-way must
leave neither half-written outputs nor lost work. So a stage writes its outputs under its work
directory (:class:`Staging`) and moves them to their final paths only when it succeeds
(:meth:`Staging.publish`); what a training stage needs to continue after an interruption (its
resume state, :mod:`genduel.train.resume`) lives there too, under a *key* that hashes everything
its result depends on (:func:`stage_key`), so that a re-run with other params or inputs never
continues from a state that does not belong to it.

The work root is ``.genduel/work`` under the current directory (the repository root when DVC runs
the stage), or ``$GENDUEL_WORK_DIR``: point that at one absolute folder to resume queued or
``--temp`` experiments, whose temporary copies of the repository are deleted when they fail.

**Finished work.** A stage that succeeds under DVC exits before DVC records its outputs in
``dvc.lock``; a ``kill -9`` in between (of ``dvc repro`` itself, or a lost machine) made DVC run
the stage again, and its resume state was gone: every epoch was trained again. A training stage
therefore keeps a *finished record* (``staged(..., finished=True)``): ``<work dir>/done/``, the
published outputs (hard links, or copies on file systems without them), written before they are
published. A later run of the same key finds it (:meth:`Staging.reuse_finished`) and publishes
it again instead of training, unless ``dvc.lock`` records exactly those outputs
(:func:`dvc_recorded`; then the record is stale, the run was forced, e.g. ``dvc repro -f``, and
it trains). Each stage keeps the record of its last finished key only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from genduel.errors import DataError
from genduel.io import digest, disk_full

log = logging.getLogger(__name__)

#: The work root, relative to the current directory, when $GENDUEL_WORK_DIR is not set.
DEFAULT_ROOT = Path(".genduel") / "work"
#: A work directory's finished record (its outputs as published), and the file that marks it
#: whole.
DONE, DONE_MARK = "done", ".complete"


def work_root(env: Mapping[str, str] | None = None) -> Path:
    """``$GENDUEL_WORK_DIR`` or ``.genduel/work``."""
    env = os.environ if env is None else env
    return Path(env.get("GENDUEL_WORK_DIR") or DEFAULT_ROOT)


def _hash_path(h: Any, path: Path, pattern: str = "*") -> None:
    """Feed a file, or every file of a folder matching ``pattern`` in sorted order (names and
    bytes), to ``h``."""
    files = sorted(p for p in path.rglob(pattern) if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")


def stage_key(stage: str, params: Mapping[str, Any], inputs: Iterable[str | Path]) -> str:
    """A hex key of everything a stage's result depends on: its name, its params (any JSON-able
    mapping), the bytes of its ``inputs`` (files or folders: data, upstream models) and of the
    code it runs (:func:`_loaded_code`). Missing inputs count as absent, not as an error."""
    h = hashlib.sha256(usedforsecurity=False)
    h.update(json.dumps({"stage": stage, "params": params}, sort_keys=True,
                        default=str).encode())
    for path in map(Path, inputs):
        h.update(b"\1" + str(path).encode() + b"\0")
        if path.exists():
            _hash_path(h, path)
    for path in _loaded_code():
        h.update(b"\2" + path.name.encode() + b"\0")
        _hash_path(h, path)
    return h.hexdigest()[:16]


def _loaded_code() -> list[Path]:
    """The stage's code: the source files of the ``genduel`` modules this process has imported
    and its main script. Like the stage's DVC deps, so an edit to code the stage does not run
    (the report, say) leaves the key, and an interrupted training's state, valid."""
    files = {Path(m.__file__) for name, m in list(sys.modules.items())
             if (name == "genduel" or name.startswith("genduel.") or name == "__main__")
             and getattr(m, "__file__", None) and str(m.__file__).endswith(".py")}
    return sorted(files, key=lambda p: (p.name, str(p)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _beside(dst: Path) -> Path:
    """The temporary name of an output on its way to ``dst``: in ``dst``'s folder, so on its
    file system."""
    return dst.with_name(dst.name + ".tmp")


def _bring(src: Path, dst: Path) -> bool:
    """Put ``src`` (file or folder) at :func:`_beside` ``dst``: one rename, or across file
    systems a copy (``src`` kept); True when it was copied. A failed copy leaves no temporary
    file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(dst)
    _remove(tmp)
    try:
        os.replace(src, tmp)
        return False
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    try:
        if src.is_dir():
            shutil.copytree(src, tmp, symlinks=True)
        else:
            shutil.copy2(src, tmp)
    except BaseException:
        _remove(tmp)
        raise
    return True


def _swap(tmp: Path, dst: Path) -> None:
    """Rename ``tmp`` to ``dst`` (same folder), replacing what is there."""
    old = dst.with_name(dst.name + ".old")
    _remove(old)
    if dst.exists() or dst.is_symlink():
        os.replace(dst, old)  # a folder cannot be replaced in one step: set the old one aside
    try:
        os.replace(tmp, dst)
    except BaseException:
        if old.exists():
            os.replace(old, dst)
        raise
    _remove(old)


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of the folder ``src`` made of hard links (copies where the file system
    has none). Every writer here replaces files whole, so a linked file never changes under
    the other name."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, symlinks=True, copy_function=link)


def dvc_recorded(stage: str, done: Path, finals: Sequence[Path],
                 lock: Path = Path("dvc.lock")) -> bool:
    """Whether ``lock`` records, for ``stage``, the md5 of every file output as ``done`` holds
    it (a folder output is not compared; a missing or unreadable lock records nothing)."""
    import yaml

    try:
        outs = yaml.safe_load(lock.read_text())["stages"][stage]["outs"]
        md5s = {o["path"]: o.get("md5") for o in outs}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return False
    files = [f for f in finals if (done / _relative(f)).is_file()]
    return bool(files) and all(md5s.get(f.as_posix()) == digest(done / _relative(f), "md5")
                               for f in files)


def _relative(final: Path) -> Path:
    return final.relative_to(final.anchor) if final.is_absolute() else final


class Staging:
    """Where a stage writes its outputs until it succeeds.

    ``staging.path(final)`` is the place to write what belongs at ``final`` (a file or a folder);
    :meth:`publish` moves every staged output to its final path, each in one rename.
    """

    def __init__(self, root: Path, finals: Sequence[str | Path]) -> None:
        self.root = Path(root)
        self.finals = [Path(f) for f in finals]

    def path(self, final: str | Path) -> Path:
        final = Path(final)
        if final not in self.finals:
            raise ValueError(f"{final} is not one of this stage's outputs {self.finals}")
        staged = self.root / "out" / _relative(final)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    @property
    def done(self) -> Path:
        """The finished record of this work directory (see the module's doc)."""
        return self.root / DONE

    def reuse_finished(self, stage: str, lock: Path = Path("dvc.lock")) -> bool:
        """Stage the outputs of the finished record again, unless there is none (or not a
        whole one) or ``lock`` records them for ``stage`` (the record is then dropped); True
        when they are staged, ready to publish."""
        if not (self.done / DONE_MARK).is_file():
            return False
        if dvc_recorded(stage, self.done, self.finals, lock):
            _remove(self.done)
            return False
        _remove(self.root / "out")
        _link_tree(self.done, self.root / "out")
        _remove(self.root / "out" / DONE_MARK)
        if all(self.path(f).exists() for f in self.finals):
            return True
        _remove(self.done)  # a record of other outputs (the stage changed them): train
        _remove(self.root / "out")
        return False

    def keep_finished(self) -> None:
        """Record the staged outputs as finished work (whole or not at all), unless they came
        from this record."""
        if (self.done / DONE_MARK).is_file():
            return
        tmp = self.root / f"{DONE}.tmp"
        _remove(tmp)
        _link_tree(self.root / "out", tmp)
        (tmp / DONE_MARK).write_text("the outputs of a finished run, kept until DVC records them\n")
        _remove(self.done)
        os.replace(tmp, self.done)

    def publish(self) -> None:
        """Move each staged output over its final path, in two steps: every output first to a
        temporary name beside its final path (a rename, or a copy when the final path is on
        another file system), then each renamed into place. An output the stage did not
        produce, or a first step that fails (a full disk under a copy), is an error before any
        final path changes: the temporary names are removed and the staged outputs are kept.

        Raises:
            DataError: an output is missing (a bug), or the disk is full (one line naming the
                final path).
        """
        missing = [f for f in self.finals if not self.path(f).exists()]
        if missing:
            raise DataError(f"the stage did not produce {', '.join(map(str, missing))}; nothing "
                            "was published (a bug: please report it)")
        brought: list[tuple[Path, Path, bool]] = []  # (staged, final, copied)
        try:
            for final in self.finals:
                brought.append((self.path(final), final, _bring(self.path(final), final)))
        except BaseException as exc:
            for staged_out, done, copied in reversed(brought):
                if copied:
                    _remove(_beside(done))
                else:
                    os.replace(_beside(done), staged_out)
            if isinstance(exc, OSError) and disk_full(exc):
                raise DataError(f"no space left on device writing {final}; free space and re-run "
                                f"(the outputs at their final paths are unchanged, the stage's "
                                f"work waits in {self.root})") from exc
            raise
        for _, final, _ in brought:
            _swap(_beside(final), final)
        log.debug("published %s", ", ".join(map(str, self.finals)))


@contextlib.contextmanager
def staged(stage: str, finals: Sequence[str | Path], *, key: str = "",
           keep_on_error: bool = False, owner: bool = True,
           finished: bool = False) -> Iterator[Staging]:
    """A :class:`Staging` under ``<work root>/<stage>[-<key>]``, published when the block ends
    without an exception, then removed; with ``finished`` (a keyed training stage under DVC),
    all but its finished record (:meth:`Staging.keep_finished`, written before the outputs are
    published), and the records of the stage's other keys.

    On an exception nothing moves: the final paths keep what they held. The work directory is
    removed too, unless ``keep_on_error`` and its ``resume/`` folder holds a saved state (a
    training stage's: :mod:`genduel.train.resume`) or it holds a finished record; a failure
    before the first save leaves nothing behind. A publish that fails
    (:meth:`Staging.publish`) keeps the work directory.
    Only the ``owner`` (rank 0 of a data-parallel run) publishes and removes anything; the other
    ranks share its work directory for their resume states.
    """
    if not owner:
        yield Staging(work_root() / (f"{stage}-{key}" if key else stage), finals)
        return
    root = work_root() / (f"{stage}-{key}" if key else stage)
    if not keep_on_error:
        _remove(root / "out")  # a previous run's leftovers; resumable ones are kept
    staging = Staging(root, finals)
    try:
        yield staging
    except BaseException:
        resume = root / "resume"
        saved = resume.is_dir() and any(resume.glob("*.pt"))
        if not (keep_on_error and (saved or (staging.done / DONE_MARK).is_file())):
            _remove(root)
        raise
    if not finished:
        staging.publish()
        _remove(root)
        return
    staging.keep_finished()
    staging.publish()
    for path in root.iterdir():
        if path.name != DONE:
            _remove(path)
    for other in work_root().glob(f"{stage}-*"):
        if other != root and other.name.rsplit("-", 1)[0] == stage:
            _remove(other / DONE)
            with contextlib.suppress(OSError):
                other.rmdir()  # when nothing else (a resume state) is left in it
