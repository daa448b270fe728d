"""An edition's life: build (select → items → variants), lifecycle (one table of
status changes), preview (what a reader would get, a dry run, a test copy) and
shaping (what an editor changes at the desk). The send itself is ``send``'s."""
