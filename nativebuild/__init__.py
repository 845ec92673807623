"""Compiled build (mypyc) of the hot state-machine modules: nativebuild.compile builds it,
nativebuild.loader uses it only while it matches the sources."""
