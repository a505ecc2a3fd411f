"""`python -m bigshuf` runs the same CLI as the `bigshuf` command."""
from bigshuf.launch import main

if __name__ == "__main__":
    main()
