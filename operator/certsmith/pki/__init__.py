"""Pure X.509 utilities: keys, names, CA and leaf building, inspection. No I/O, no clock."""
