"""The `vqcodec` command (main.py), installed as vqcodec.cli."""
if __name__ != "vqcodec.cli":  # the repository's cli/ folder imported as a top-level package
    raise ImportError(f"the repository's cli/ folder is installed as vqcodec.cli; import vqcodec.cli, not "
                      f"{__name__} (as two names it would load twice, e.g. with two VQFormatError classes)")
