"""The ``perpbft`` command. Importing it first enables the compiled build of the hot
state-machine modules when it matches the sources (nativebuild/loader.py), before any command
module imports ``state_machine``."""

from nativebuild.loader import activate

activate()
