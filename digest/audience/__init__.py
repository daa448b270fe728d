"""The audience: mailing lists, subscribers (rows checked, the book that keeps
them, CSV files) and the double opt-in's confirmation mail."""
