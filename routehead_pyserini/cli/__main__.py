"""``python -m routehead_pyserini.cli``: the same as the ``routehead-pyserini`` command."""
from . import main

if __name__ == "__main__":
    main()
