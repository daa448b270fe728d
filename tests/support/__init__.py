"""What the tests share (issue 26): the databases, the SMTP servers, the web app,
the browser and the `digest` command, each in a module of its own. Modules with
fixtures are plugins of the root conftest; a test module imports helpers from here,
never from another test module."""
