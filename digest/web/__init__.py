"""The web door: ``app`` (the Starlette app and its context), ``public`` (the
reader's pages), ``desk`` (the editors' desk and the archive), ``auth`` (desk
logins and sessions), ``guard`` (body cap, security headers), ``server``
(uvicorn, as `digest serve` runs it)."""
