"""`portraitsr hash-key`: the SHA-256 digest of an API key, for PORTRAITSR_API_KEYS_FILE."""

from __future__ import annotations

import argparse
import secrets
import sys

HELP = "print the SHA-256 digest of an API key (a line of PORTRAITSR_API_KEYS_FILE); --new makes a key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", nargs="?", help="the key (default: read one line from stdin, so it stays out of the shell history)")
    parser.add_argument("--new", action="store_true", help="make a random key; print it (stderr) and its digest (stdout)")


def run(args: argparse.Namespace) -> int:
    from service.http.auth import hash_key

    if args.new:
        key = secrets.token_urlsafe(32)
        print(key, file=sys.stderr)  # the key alone, so `2> file` keeps it for a client
    else:
        key = args.key if args.key is not None else sys.stdin.readline().strip()
    if not key:
        print("error: an empty key", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0
