"""``python -m pipeline.train ARGS`` = ``plexus train ARGS``: the entry point torchrun starts on every rank."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
