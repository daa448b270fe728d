"""Schedules: the files that say when and what (``files``), what a send time asks
for (``runner``) and the APScheduler jobs that keep the time (``jobs``)."""
