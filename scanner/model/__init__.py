"""The frozen records stages hand each other, and the status vocabularies (StrEnums).
Imports nothing of the scanner: every other package may import it."""
