"""Pure CSV: what csvault accepts as a CSV file and how it reads one. No Django, no database.

``limits`` (bounds and the delimiter rule), ``errors`` (:class:`CsvDataError`, which says
what is wrong and where), ``sniff`` (is this a text file at all: binary magic numbers,
byte order marks, UTF-16, NUL), ``lines`` (decoding and cutting text into physical
lines), ``reader`` (the reference reader, which knows every rule), ``blocks`` (the block
plaintext formats that the C parser, the Python code and the tests share) and
``fastcsv`` with ``_csvblocks.c`` (the C fast path beside the reference reader).
"""
