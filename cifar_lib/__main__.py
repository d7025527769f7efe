import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while torch loads: the same quiet exit as during a command
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
