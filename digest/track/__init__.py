"""Track: what happened to every message. ``replies`` judges an SMTP reply once,
``outcomes`` turns it into a delivery's next state, ``ledger`` writes it, ``bounces``
reads what comes back later, ``engagement`` counts opens and clicks, ``reports``
sums an edition up."""
