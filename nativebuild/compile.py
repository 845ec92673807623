"""Build the compiled modules: ``python -m nativebuild.compile`` (``make native``).

Compiles :data:`nativebuild.modules.COMPILED_MODULES` with mypyc (shipped with mypy) into one
shared library and a small extension per module in ``build/mypyc/``, then writes the stamp that
:mod:`nativebuild.loader` checks (sources hashed before compiling, so an edit made during the
build makes it stale). Exits 0 without building when the tree is already up to date, 2 when
no C compiler or no Python headers are found (the pure-Python modules run), 1 when the build
fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

from nativebuild.loader import make_stamp, source_hashes, stale_reason
from nativebuild.modules import (
    BUILD_DIR,
    COMPILED_MODULES,
    GROUP_NAME,
    REPO_ROOT,
    STAMP_NAME,
    WORK_DIR,
    source_path,
)

EXIT_NO_TOOLCHAIN = 2

# mypyc's runtime header decides whether a product of two small ints can be computed in C with a
# check that is "conservative": any operand of 2**30 or more, and any negative one, takes the
# slow path (both boxed as Python ints, PyNumber_Multiply, the result unboxed). Prices times
# sizes times tick-lot atoms are past 2**30 and PnL is often negative, so most of the state
# machine's products took it (10 % of a crash cascade's instructions). The build compiles
# against a copy of the header in which the check is exact (the C compiler's overflow builtin
# on the very product the fast path computes), so results are the same, only faster. Another
# mypyc whose header lacks this text is used as it is.
MUL_CHECK_CONSERVATIVE = "\n".join(
    (
        "static inline bool CPyTagged_IsMultiplyOverflow(CPyTagged left, CPyTagged right) {",
        "    // This is conservative -- return false only in a small number of all non-overflow"
        " cases",
        "    return left >= (1U << (CPY_INT_BITS/2 - 1)) || right >= (1U << (CPY_INT_BITS/2 - 1));",
        "}",
    )
)
MUL_CHECK_EXACT = "\n".join(
    (
        "static inline bool CPyTagged_IsMultiplyOverflow(CPyTagged left, CPyTagged right) {",
        "    // perpbft nativebuild: exact (the product CPyTagged_Multiply computes when short)",
        "    Py_ssize_t product;",
        "    return __builtin_mul_overflow(",
        "        (Py_ssize_t)left, CPyTagged_ShortAsSsize_t(right), &product);",
        "}",
    )
)
RUNTIME_PATCH_DIR = "runtime-header"


def missing_toolchain() -> tuple[str, list[str]] | None:
    """What the build lacks on this machine and the Debian packages that provide it, or None."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})", ["gcc", "libc6-dev"]
    for module in ("mypyc", "setuptools"):  # mypy brings mypyc; venvs of 3.12+ lack setuptools
        if importlib.util.find_spec(module) is None:
            return f"no {module} in this environment (pip install {module})", []
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        # Debian's own interpreter has its headers in python3-dev; others (pyenv) ship them.
        packages = ["python3-dev"] if str(include).startswith("/usr/include/") else []
        return f"no Python headers ({include}/Python.h)", packages
    return None


def toolchain_report() -> int:
    """``--toolchain``: print the Debian packages to install (none: nothing missing)."""
    lacking = missing_toolchain()
    if lacking is None:
        return 0
    print(" ".join(lacking[1]))
    print(f"nativebuild: {lacking[0]}", file=sys.stderr)
    return EXIT_NO_TOOLCHAIN


def patched_runtime_header(runtime_dir: Path, out_dir: Path) -> Path | None:
    """A copy of mypyc's ``CPy.h`` with the exact multiplication check in ``out_dir``, or None
    when this mypyc's header does not have the check this patch replaces."""
    text = (runtime_dir / "CPy.h").read_text(encoding="utf-8")
    if text.count(MUL_CHECK_CONSERVATIVE) != 1:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    header = out_dir / "CPy.h"
    header.write_text(text.replace(MUL_CHECK_CONSERVATIVE, MUL_CHECK_EXACT), encoding="utf-8")
    return out_dir


def compile_modules(build_lib: Path, parallel: int) -> None:
    # Imported here: mypyc and setuptools are only needed when building.
    from mypyc.build import include_dir, mypycify
    from setuptools.dist import Distribution  # type: ignore[import-untyped]

    os.chdir(REPO_ROOT)  # mypyc names modules by their paths from here
    paths = [source_path(m).relative_to(REPO_ROOT).as_posix() for m in COMPILED_MODULES]
    extensions = mypycify(
        paths, opt_level="3", group_name=GROUP_NAME, target_dir=str(WORK_DIR), multi_file=True
    )
    patched = patched_runtime_header(Path(include_dir()), WORK_DIR / RUNTIME_PATCH_DIR)
    if patched is None:
        print("nativebuild: mypyc's CPy.h differs from the one patched; used as it is")
    else:
        for ext in extensions:  # searched before mypyc's own runtime directory
            ext.include_dirs.insert(0, str(patched))
    # A Distribution of our own, not setup(): setup() would read pyproject.toml's metadata.
    dist = Distribution({"name": "perpbft-native", "ext_modules": extensions})
    build_ext = dist.get_command_obj("build_ext")
    build_ext.build_lib = str(build_lib)
    build_ext.build_temp = str(WORK_DIR / "temp")
    build_ext.parallel = parallel
    dist.run_command("build_ext")


def replace_build(fresh: Path) -> None:
    """Swap the new build in by renames: a running process keeps the files it mapped (they are
    unlinked, never rewritten in place), and a process starting meanwhile finds either a
    complete build or none (then pure Python)."""
    old = BUILD_DIR.with_name(BUILD_DIR.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if BUILD_DIR.exists():
        BUILD_DIR.rename(old)
    fresh.rename(BUILD_DIR)
    shutil.rmtree(old, ignore_errors=True)


def build(force: bool, parallel: int) -> int:
    if not force and stale_reason() is None:
        print(f"nativebuild: {BUILD_DIR} is up to date")
        return 0
    lacking = missing_toolchain()
    if lacking is not None:
        print(f"nativebuild: cannot compile: {lacking[0]}; the pure-Python modules run")
        return EXIT_NO_TOOLCHAIN
    started = time.monotonic()
    sources = source_hashes()
    fresh = BUILD_DIR.with_name(BUILD_DIR.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    compile_modules(fresh, parallel)
    stamp = make_stamp(sources, fresh)
    (fresh / STAMP_NAME).write_text(json.dumps(stamp, indent=1, sort_keys=True), encoding="utf-8")
    reason = stale_reason(fresh)
    if reason is not None:
        print(f"nativebuild: the new build is not usable: {reason}", file=sys.stderr)
        return 1
    replace_build(fresh)
    took = time.monotonic() - started
    print(f"nativebuild: compiled {len(COMPILED_MODULES)} modules into {BUILD_DIR} in {took:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nativebuild.compile", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--parallel", type=int, default=2, help="C compiler jobs")
    parser.add_argument(
        "--toolchain", action="store_true", help="only list the Debian packages the build lacks"
    )
    args = parser.parse_args(argv)
    if args.toolchain:
        return toolchain_report()
    return build(args.force, args.parallel)


if __name__ == "__main__":
    sys.exit(main())
