"""`python -m synthloom ...`: the same command line as `synthloom ...`."""

from synthloom.cli import main

if __name__ == "__main__":
    main()
