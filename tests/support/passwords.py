"""The desk's password hashing in the suite's own processes: Argon2id still, at
the cheapest parameters instead of RFC 9106's 64 MiB and three passes.

Every desk test seeds an account and logs in, and each hash or check took 0.17 s
of CPU: 27 of the desk's tests made 88 of them, 15 s of CPU in a 34 s run
(27 s after). What a hash is (Argon2id, salted, never the password) is unchanged and
tested; the `digest` processes the tests start hash at the product's parameters,
which ``test_the_product_hashes_at_rfc_9106_parameters`` holds."""

from __future__ import annotations

from argon2 import profiles

from digest.team import accounts

PRODUCT = accounts.HASHING  # what digest hashes with, kept for the test that checks it
accounts.HASHING = profiles.CHEAPEST
