"""The ``sampan`` command line: parse, call one engine function, format. No engine logic lives here."""
